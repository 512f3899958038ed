import Foundation

/// Runs a reference script from `scripts/reference/` (or inline code) in the test venv.
public enum PythonReference {
  public struct Failure: Error, CustomStringConvertible {
    public let command: String
    public let status: Int32
    public let stderr: String
    public var description: String { "`\(command)` exited \(status):\n\(stderr)" }
  }

  /// Runs `python -c code args…` and returns standard output; throws with stderr on failure.
  @discardableResult
  public static func run(code: String, arguments: [String] = []) throws -> String {
    try run(arguments: ["-c", code] + arguments)
  }

  /// Runs a script that lives in the repository, e.g. `scripts/reference/resize.py`.
  @discardableResult
  public static func run(script relativePath: String, arguments: [String] = []) throws -> String {
    let path = TestEnvironment.packageRoot.appendingPathComponent(relativePath).path
    return try run(arguments: [path] + arguments)
  }

  private static func run(arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = TestEnvironment.pythonExecutable
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes before waiting so a chatty script cannot fill a pipe and deadlock.
    nonisolated(unsafe) var errData = Data()
    let stderrRead = DispatchGroup()
    DispatchQueue.global().async(group: stderrRead) {
      errData = err.fileHandleForReading.readDataToEndOfFile()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    stderrRead.wait()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw Failure(
        command: ([process.executableURL!.path] + arguments).joined(separator: " "),
        status: process.terminationStatus,
        stderr: String(decoding: errData, as: UTF8.self))
    }
    return String(decoding: outData, as: UTF8.self)
  }
}
