import Foundation

/// A problem that stops reading a data set, a label file or a pipeline run.
///
/// Per-image problems are not errors: they become ``SkippedSample`` records unless the pipeline
/// runs in strict mode, where the first one is thrown as ``sample(key:reason:)``.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
  /// A label or class file is malformed; `line` is 1-based (0 when the whole file is at fault).
  case labelFile(path: String, line: Int, message: String)
  /// An archive could not be opened or stopped in the middle. `lastMember` is the last member
  /// read completely (nil if none), `member` the one being read when it failed (if any).
  case archive(path: String, lastMember: String?, member: String?, message: String)
  /// A file or directory could not be read.
  case unreadable(path: String, message: String)
  /// The data set layout could not be determined or contradicts the forced one.
  case layout(String)
  /// Invalid pipeline or source configuration.
  case configuration(String)
  /// A per-image problem made fatal by strict mode.
  case sample(key: String, reason: String)

  public var description: String {
    switch self {
    case .labelFile(let path, let line, let message):
      return line > 0 ? "\(path):\(line): \(message)" : "\(path): \(message)"
    case .archive(let path, let lastMember, let member, let message):
      var text = "archive \(path): \(message)"
      if let member { text += " (while reading member \(member))" }
      text += lastMember.map { "; last good member: \($0)" } ?? "; no member was read completely"
      return text
    case .unreadable(let path, let message):
      return "cannot read \(path): \(message)"
    case .layout(let message):
      return "data set layout: \(message)"
    case .configuration(let message):
      return "configuration: \(message)"
    case .sample(let key, let reason):
      return "\(key): \(reason) (strict mode)"
    }
  }
}
