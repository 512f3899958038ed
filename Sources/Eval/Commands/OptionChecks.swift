import ArgumentParser

/// The count checks that several commands apply to their options, so each bound is worded
/// the same in every command (`--threads must be at least 1, got 0`).
enum OptionChecks {
  /// Rejects a given `value` below `minimum` as a usage error naming `option`; nil (not given)
  /// passes.
  static func require(_ value: Int?, atLeast minimum: Int, _ option: String) throws {
    guard let value, value < minimum else { return }
    let bound = minimum == 0 ? "must not be negative" : "must be at least \(minimum)"
    throw ValidationError("\(option) \(bound), got \(value)")
  }
}
