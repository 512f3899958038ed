import Foundation

/// `--engine-schedule auto`: times both engine arrangements on the first batches of a run and
/// picks the faster one for the rest.
///
/// Batches alternate sequential, concurrent, sequential, … so a change in the machine's load
/// during the trial affects both arrangements alike. The first batch of each arrangement is a
/// warm-up (a lane thread's first OpenMP team, first-touch of scratch memory) and is not
/// measured. What is measured is the whole step of a batch: the engines, scoring and logging,
/// and waiting for the next decoded batch. Decoding runs on other threads at the same time and
/// competes for the same cores, so the engines' time alone would favour the arrangement that
/// starves decoding; the whole step is what the run's throughput is made of.
///
/// Every trial batch is an ordinary batch of the evaluation: its records are written once,
/// like any other (the logits do not depend on the arrangement).
struct ScheduleTrial {
  /// Unmeasured batches per arrangement at the start of the trial.
  static let warmupBatches = 1
  /// Measured batches per arrangement.
  static let measuredBatches = 3
  /// Batches the whole trial takes.
  static var batchCount: Int { 2 * (warmupBatches + measuredBatches) }

  /// Seconds per image of each measured sequential batch, in run order.
  private(set) var sequential: [Double] = []
  /// Seconds per image of each measured concurrent batch, in run order.
  private(set) var concurrent: [Double] = []
  /// Trial batches run so far.
  private(set) var batchesRun = 0

  /// The arrangement the next batch runs on; nil once the trial is over.
  var nextArrangement: EngineSchedule? {
    batchesRun < Self.batchCount ? (batchesRun % 2 == 0 ? .sequential : .concurrent) : nil
  }

  /// Records the step of the batch just run on ``nextArrangement`` (`images` evaluated in
  /// `seconds`) and returns the decision when that batch completed the trial.
  mutating func record(seconds: Double, images: Int) -> ScheduleDecision? {
    guard let arrangement = nextArrangement else { return nil }
    batchesRun += 1
    // Warm-up batches are the first `warmupBatches` of each arrangement.
    let round = (batchesRun - 1) / 2
    if round >= Self.warmupBatches, images > 0 {
      let perImage = seconds / Double(images)
      if arrangement == .sequential {
        sequential.append(perImage)
      } else {
        concurrent.append(perImage)
      }
    }
    return nextArrangement == nil ? decision() : nil
  }

  /// The choice from what was measured so far: the arrangement with the lower median seconds
  /// per image; sequential on a tie, or when either arrangement has no measurement (the run
  /// ended during the trial; `complete` is then false).
  func decision() -> ScheduleDecision {
    let s = Self.median(sequential)
    let c = Self.median(concurrent)
    let chosen: EngineSchedule
    if let s, let c, c < s { chosen = .concurrent } else { chosen = .sequential }
    return ScheduleDecision(
      chosen: chosen, sequentialSecondsPerImage: s, concurrentSecondsPerImage: c,
      measuredBatches: [sequential.count, concurrent.count],
      complete: batchesRun >= Self.batchCount)
  }

  /// The middle value (mean of the two middle ones for an even count); nil when empty.
  static func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  }
}

/// What `--engine-schedule auto` chose, and the timings it chose on.
struct ScheduleDecision: Equatable {
  /// The arrangement kept for the rest of the run.
  var chosen: EngineSchedule
  /// Median seconds per image of the measured sequential batches; nil without one.
  var sequentialSecondsPerImage: Double?
  /// Median seconds per image of the measured concurrent batches; nil without one.
  var concurrentSecondsPerImage: Double?
  /// Measured batches: sequential, concurrent.
  var measuredBatches: [Int]
  /// False when the run ended before the trial's last batch.
  var complete: Bool

  /// Why `chosen`, as `summary.json` records it (`provenance.execution.reason`).
  var reason: String {
    let (sequential, concurrent) = (measuredBatches[0], measuredBatches[1])
    return complete
      ? "the faster median whole batch step over \(sequential) sequential and "
        + "\(concurrent) concurrent batches (after a warm-up batch each), kept for the rest"
      : "the run ended during the trial (\(sequential) sequential and \(concurrent) "
        + "concurrent batches measured); \(chosen.rawValue) by the trial's rule"
  }

  /// The one stderr line: the choice and both timings.
  var logLine: String {
    func rate(_ seconds: Double?) -> String {
      guard let seconds, seconds > 0 else { return "not measured" }
      return String(format: "%.2f ms/image (%.1f images/s)", seconds * 1000, 1 / seconds)
    }
    let timings =
      "sequential \(rate(sequentialSecondsPerImage)), concurrent \(rate(concurrentSecondsPerImage))"
    guard complete else {
      // A run shorter than the trial (e.g. the 20-image demo) says so rather than reading as a
      // decision made on timings.
      let rule =
        sequentialSecondsPerImage != nil && concurrentSecondsPerImage != nil
        ? "the faster of the two" : "sequential unless both were measured"
      return
        "engine schedule auto: \(chosen.rawValue); the run ended within the trial's "
        + "\(ScheduleTrial.batchCount) batches (\(timings); kept \(rule))"
    }
    return
      "engine schedule auto: \(chosen.rawValue) (\(timings); whole batch steps incl. decode wait, "
      + "median of \(ScheduleTrial.measuredBatches) batches each after \(ScheduleTrial.warmupBatches) warm-up)"
  }
}
