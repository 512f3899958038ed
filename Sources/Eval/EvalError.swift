import ArgumentParser

/// The process exit statuses of `imagenet-eval`, one per way a run can end.
///
/// Scripts and CI gates branch on these, so they never change meaning:
///
/// | status | meaning |
/// | --- | --- |
/// | 0 | success |
/// | 1 | usage or input error: a bad option value, a missing or malformed file |
/// | 2 | internal error: a bug, reported with as much context as we have |
/// | 3 | `--max-drop` gate exceeded: the int8 top-1 drop is above the allowed points |
/// | 4 | inconsistent run: `--resume` refused (the directory holds a different run) or `merge` found shards of different runs, gaps or overlaps |
public enum EvalExitStatus {
  /// Everything worked.
  public static let success = ExitCode(0)
  /// A bad option value, or an input file that is missing or malformed.
  public static let inputError = ExitCode(1)
  /// A bug: something the tool itself got wrong.
  public static let internalError = ExitCode(2)
  /// The int8 top-1 drop exceeded `--max-drop`.
  public static let dropGateExceeded = ExitCode(3)
  /// Resume refused, or shards that do not merge into one run.
  public static let inconsistentRun = ExitCode(4)
}

/// An error with a message meant for a person and the exit status it maps to.
public struct EvalError: Error, CustomStringConvertible, Equatable {
  /// What went wrong, in the terms of the exit-status scheme.
  public enum Kind: Sendable, Equatable {
    /// Bad user input: option values, files, records.
    case input
    /// A broken internal invariant.
    case `internal`
    /// A resume or merge that would mix different runs, lose samples or count some twice.
    case inconsistentRun
  }

  /// The category, which decides the exit status.
  public var kind: Kind
  /// The full message, naming the file, line, field or shard involved.
  public var message: String

  /// Creates an error of `kind` with a message for the user.
  public init(_ kind: Kind, _ message: String) {
    self.kind = kind
    self.message = message
  }

  public var description: String { message }

  /// The process exit status for this error.
  public var exitCode: ExitCode {
    switch kind {
    case .input: EvalExitStatus.inputError
    case .internal: EvalExitStatus.internalError
    case .inconsistentRun: EvalExitStatus.inconsistentRun
    }
  }
}
