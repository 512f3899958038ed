import Foundation

/// How a `run` session scheduled its engines: not part of the run's identity (the logits do
/// not depend on it), so a resumed session may choose differently; recorded per session in
/// `summary.json`'s provenance.
public struct EngineExecution: Codable, Sendable, Equatable {
  /// `--engine-schedule` as given: `auto`, `sequential` or `concurrent`.
  public var requested: String
  /// The arrangement that ran the batches after the trial (all of them without one).
  public var chosen: String
  /// Why: fixed by the option, a single engine lane, or the trial's outcome.
  public var reason: String
  /// Median seconds per image of the trial's measured sequential batches (whole batch step,
  /// waiting for decoding included); nil without a trial.
  public var sequentialSecondsPerImage: Double?
  /// The same for the concurrent arrangement.
  public var concurrentSecondsPerImage: Double?
  /// Batches run as the trial (warm-up included, recorded like every other batch); nil
  /// without a trial.
  public var trialBatches: Int?
  /// Per arrangement built, per engine: its threads, OpenMP thread count and batch shards
  /// (the `versionInfo` keys that depend on the arrangement; see
  /// ``RunManifest/executionKeys``).
  public var engineThreads: [String: [String: [String: String]]]

  /// Creates an execution record.
  public init(
    requested: String, chosen: String, reason: String, sequentialSecondsPerImage: Double? = nil,
    concurrentSecondsPerImage: Double? = nil, trialBatches: Int? = nil,
    engineThreads: [String: [String: [String: String]]] = [:]
  ) {
    self.requested = requested
    self.chosen = chosen
    self.reason = reason
    self.sequentialSecondsPerImage = sequentialSecondsPerImage
    self.concurrentSecondsPerImage = concurrentSecondsPerImage
    self.trialBatches = trialBatches
    self.engineThreads = engineThreads
  }

  enum CodingKeys: String, CodingKey {
    case requested, chosen, reason
    case sequentialSecondsPerImage = "sequential_seconds_per_image"
    case concurrentSecondsPerImage = "concurrent_seconds_per_image"
    case trialBatches = "trial_batches"
    case engineThreads = "engine_threads"
  }

  /// One line for the reports.
  var summaryLine: String {
    var line = "\(chosen) (--engine-schedule \(requested): \(reason))"
    if let s = sequentialSecondsPerImage, let c = concurrentSecondsPerImage {
      line += String(
        format: "; trial: sequential %.2f ms/image, concurrent %.2f ms/image", s * 1000, c * 1000)
    }
    return line
  }
}
