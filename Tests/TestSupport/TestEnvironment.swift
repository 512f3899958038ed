import Foundation

/// Locations every test suite needs: the package root, the read-only `../shared` material and
/// the Python virtual environment that holds the independent references (Pillow, OpenCV,
/// onnxruntime).
public enum TestEnvironment {
  /// The package root, found from this file's location so tests work from any directory.
  public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // TestSupport
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

  /// `../shared` beside the checkout; absent on a user's fresh machine.
  public static let sharedRoot: URL = packageRoot.deletingLastPathComponent()
    .appendingPathComponent("shared")

  public static var sharedAvailable: Bool {
    FileManager.default.fileExists(atPath: sharedRoot.appendingPathComponent("labels").path)
  }

  /// The message a test shows when it skips for lack of `../shared`.
  public static let sharedMissingMessage =
    "skipped: ../shared (ILSVRC2012 subset and label files) is not present beside the checkout"

  public static func shared(_ relativePath: String) -> URL {
    sharedRoot.appendingPathComponent(relativePath)
  }

  /// The Python interpreter with the reference libraries: `$IMAGENET_EVAL_PYTHON`, else the
  /// package's `.venv` made by `scripts/setup-python.sh`.
  public static var pythonExecutable: URL {
    if let override = ProcessInfo.processInfo.environment["IMAGENET_EVAL_PYTHON"] {
      return URL(fileURLWithPath: override)
    }
    return packageRoot.appendingPathComponent(".venv/bin/python")
  }

  /// True in CI, where a missing reference must fail rather than skip.
  /// True when `IMAGENET_EVAL_SLOW_TESTS=1`: whole-model agreement suites that do not yet fit
  /// the suite's time budget (or do not yet meet their thresholds) run only when asked for.
  public static var slowTestsEnabled: Bool {
    ProcessInfo.processInfo.environment["IMAGENET_EVAL_SLOW_TESTS"] == "1"
  }

  /// Why a slow suite was skipped.
  public static let slowTestsMessage =
    "slow whole-model agreement suite: set IMAGENET_EVAL_SLOW_TESTS=1 to run it"

  public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

  public static var pythonAvailable: Bool {
    FileManager.default.isExecutableFile(atPath: pythonExecutable.path) || isCI
  }

  public static let pythonMissingMessage =
    "skipped: no reference Python venv; run scripts/setup-python.sh (CI never skips this)"

  /// A fresh directory under the system temporary directory, removed by the caller.
  public static func makeTemporaryDirectory(_ label: String = "imagenet-eval-test") throws -> URL {
    let url = FileManager.default.temporaryDirectory
      .appendingPathComponent("\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }
}
