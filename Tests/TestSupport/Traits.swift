import Foundation
import Testing

extension Trait where Self == ConditionTrait {
  /// Skips a test or suite, saying why, when the reference Python venv is missing (never in
  /// CI, where it exists).
  public static var requiresPython: Self {
    .enabled(
      if: TestEnvironment.pythonAvailable, Comment(rawValue: TestEnvironment.pythonMissingMessage))
  }

  /// Skips a test or suite, saying why, when `../shared` (the ILSVRC2012 subset and label
  /// files) is missing (never in CI, where it exists).
  public static var requiresShared: Self {
    .enabled(
      if: TestEnvironment.sharedAvailable, Comment(rawValue: TestEnvironment.sharedMissingMessage))
  }
}
