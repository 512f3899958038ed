/// Every failure of loading, checking, transforming or evaluating a model.
///
/// The message names the file, node (name and op type) or tensor involved.
public struct ModelError: Error, CustomStringConvertible, Equatable {
  /// What went wrong, for callers and tests that branch on it.
  public enum Kind: Sendable, Equatable {
    /// The file cannot be read (missing, truncated, not ONNX).
    case unreadableFile
    /// A tensor is malformed: bad dimensions, size mismatch, unsupported type, bad data.
    case invalidTensor
    /// External tensor data is missing or points outside the model's directory.
    case unsafeExternalData
    /// A node reads a value that nothing defines.
    case missingValue
    /// One or more ops are not supported (all listed in one message).
    case unsupportedOperators
    /// A node's attributes or input shapes are invalid for its op.
    case invalidNode
    /// The graph as a whole is malformed (cycle, no output, uninferred shape).
    case invalidGraph
  }

  /// The category.
  public let kind: Kind
  /// A human-readable explanation.
  public let message: String

  /// Creates an error.
  public init(_ kind: Kind, _ message: String) {
    self.kind = kind
    self.message = message
  }

  /// The message.
  public var description: String { message }
}
