import ArgumentParser
import Foundation

/// One deterministic slice of the dataset: the samples whose index `i` satisfies
/// `i % count == index`, so `count` workers cover every sample exactly once.
public struct Shard: Sendable, Hashable, Codable, CustomStringConvertible {
  /// This worker's slice, `0 ..< count`.
  public let index: Int
  /// How many slices the dataset is cut into.
  public let count: Int

  /// The whole dataset as one shard.
  public static let whole = Shard(uncheckedIndex: 0, count: 1)

  private init(uncheckedIndex index: Int, count: Int) {
    self.index = index
    self.count = count
  }

  /// Creates shard `index` of `count`, rejecting out-of-range values.
  public init(index: Int, count: Int) throws {
    guard count >= 1 else {
      throw EvalError(.input, "invalid shard \(index)/\(count): the shard count must be at least 1")
    }
    guard index >= 0 else {
      throw EvalError(
        .input, "invalid shard \(index)/\(count): the shard index must not be negative")
    }
    guard index < count else {
      throw EvalError(
        .input,
        "invalid shard \(index)/\(count): the index must be below the count (0...\(count - 1)); shards are numbered from 0"
      )
    }
    self.init(uncheckedIndex: index, count: count)
  }

  /// Parses `i/N`, as written on the command line (`--shard 2/8`).
  ///
  /// Commands declare `@Option(transform: Shard.init(parsing:)) var shard = Shard.whole`, so
  /// the parser shows this initializer's message (which says what is wrong) on bad input.
  public init(parsing text: String) throws {
    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2 else {
      throw EvalError(.input, "invalid shard '\(text)': expected INDEX/COUNT, e.g. 0/4")
    }
    let trimmed = parts.map { $0.trimmingCharacters(in: .whitespaces) }
    guard let index = Int(trimmed[0]), let count = Int(trimmed[1]) else {
      throw EvalError(
        .input, "invalid shard '\(text)': INDEX and COUNT must be integers, e.g. 0/4")
    }
    try self.init(index: index, count: count)
  }

  /// Whether the sample at `sampleIndex` (position in the deterministic dataset order)
  /// belongs to this shard.
  public func contains(_ sampleIndex: Int) -> Bool { sampleIndex % count == index }

  /// `index/count`.
  public var description: String { "\(index)/\(count)" }

  public init(from decoder: Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    do {
      try self.init(parsing: text)
    } catch let error as EvalError {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: error.message))
    }
  }

  public func encode(to encoder: Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }
}
