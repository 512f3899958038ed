import ArgumentParser
import Foundation

/// The `imagenet-eval` command line: every subcommand is registered here.
///
/// Exit statuses follow ``EvalExitStatus``: 0 success, 1 usage or input error, 2 internal
/// error, 3 `--max-drop` gate exceeded, 4 resume refused or shards that do not merge.
public struct ImagenetEval: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "imagenet-eval",
    abstract: "Measure what int8 quantization costs an ImageNet classifier, and where.",
    discussion: """
      Exit status: 0 success; 1 usage or input error; 2 internal error; 3 --max-drop gate \
      exceeded; 4 resume refused or merge inconsistent (different runs, gaps, overlaps).
      """,
    version: ToolInfo.version,
    subcommands: [
      RunCommand.self, InferCommand.self, BenchCommand.self, InspectCommand.self, MergeCommand.self,
      TableCommand.self, QuantizeCommand.self,
    ]
  )

  public init() {}

  /// Runs the command line and exits with the documented status.
  public static func main() {
    let status = exitStatus(arguments: Array(CommandLine.arguments.dropFirst()))
    Foundation.exit(status)
  }

  /// Parses and runs `arguments`, prints any error, and returns the exit status; split from
  /// ``main()`` so tests can check the status without ending the process.
  public static func exitStatus(arguments: [String]) -> Int32 {
    do {
      var command = try parseAsRoot(arguments)
      try command.run()
      return EvalExitStatus.success.rawValue
    } catch let error as EvalError {
      printError("imagenet-eval: \(error.message)")
      return error.exitCode.rawValue
    } catch {
      let code = exitCode(for: error)
      let message = fullMessage(for: error)
      if code == .success {
        // --help and --version: the message is the requested output.
        if !message.isEmpty { print(message) }
        return EvalExitStatus.success.rawValue
      }
      if !message.isEmpty { printError(message) }
      if error is ExitCode { return code.rawValue }
      // Argument-parser usage errors (its own 64) and everything else map onto our scheme.
      return code == .validationFailure || code == .failure
        ? EvalExitStatus.inputError.rawValue : EvalExitStatus.internalError.rawValue
    }
  }
}

func printError(_ message: String) {
  FileHandle.standardError.write(Data((message + "\n").utf8))
}
