import Foundation

/// One line of `predictions.jsonl`: what every engine said about one sample, or why the
/// sample was skipped.
///
/// Every sample of a run's shard gets exactly one record, so the log alone decides the
/// metrics, and resume and merge can prove that nothing is missing or counted twice.
public struct ImageRecord: Codable, Sendable, Equatable {
  /// Position in the deterministic dataset order (the same across shards).
  public var index: Int
  /// The sample's key, e.g. `ILSVRC2012_val_00000001.JPEG`.
  public var key: String
  /// The ground-truth class id, when known.
  public var label: Int?
  /// Per engine name: its top-5 classes and their softmax probabilities. Absent when skipped.
  public var engines: [String: EnginePrediction]?
  /// Per candidate engine: how close its logits are to the reference engine's.
  public var paired: [String: LogitSimilarity]?
  /// Why the sample produced no prediction. Absent for evaluated samples.
  public var skip: SkipReason?

  /// Creates a record; use ``RecordBuilder`` to make one from logits.
  public init(
    index: Int, key: String, label: Int?, engines: [String: EnginePrediction]? = nil,
    paired: [String: LogitSimilarity]? = nil, skip: SkipReason? = nil
  ) {
    self.index = index
    self.key = key
    self.label = label
    self.engines = engines
    self.paired = paired
    self.skip = skip
  }

  /// A record for a sample that could not be evaluated.
  public static func skipped(
    index: Int, key: String, label: Int?, reason: String, detail: String
  ) -> ImageRecord {
    ImageRecord(
      index: index, key: key, label: label, skip: SkipReason(reason: reason, detail: detail))
  }
}

/// One engine's answer for one image.
public struct EnginePrediction: Codable, Sendable, Equatable {
  /// Class ids, most probable first; ties go to the lower class id.
  public var top5: [Int]
  /// Softmax probabilities of `top5`, same order.
  public var scores: [Double]

  /// Creates a prediction.
  public init(top5: [Int], scores: [Double]) {
    self.top5 = top5
    self.scores = scores
  }
}

/// How close a candidate engine's logits are to the reference engine's for one image.
public struct LogitSimilarity: Codable, Sendable, Equatable {
  /// Cosine similarity of the raw logit vectors (1 for identical directions).
  public var cosine: Double
  /// KL(P_reference ‖ P_candidate) of the softmax distributions, in nats.
  public var kl: Double

  /// Creates a similarity record.
  public init(cosine: Double, kl: Double) {
    self.cosine = cosine
    self.kl = kl
  }
}

/// Why a sample was skipped: a short reason (counted in the summary) and the full message.
public struct SkipReason: Codable, Sendable, Equatable {
  /// A short, stable category such as `decode`, `transform` or `non-finite-logits`.
  public var reason: String
  /// The full message, naming the archive member and what failed.
  public var detail: String

  /// Creates a skip reason.
  public init(reason: String, detail: String) {
    self.reason = reason
    self.detail = detail
  }
}

/// Turns the logits of all engines for one image into an ``ImageRecord``.
///
/// One builder serves a whole run; it keeps its scratch buffers, so scoring an image
/// allocates only the record itself.
public final class RecordBuilder {
  /// Engine names, reference first (e.g. `["float", "int8"]`); every other engine is paired
  /// with the reference.
  public let engineNames: [String]
  /// Logits per image per engine.
  public let classCount: Int
  private var referenceLogProbabilities: [Double]
  private var candidateLogProbabilities: [Double]

  /// Creates a builder for engines producing `classCount` logits each.
  public init(engineNames: [String], classCount: Int) throws {
    guard !engineNames.isEmpty, Set(engineNames).count == engineNames.count else {
      throw EvalError(.input, "engine names must be non-empty and unique, got \(engineNames)")
    }
    guard classCount >= 1 else {
      throw EvalError(.input, "class count must be at least 1, got \(classCount)")
    }
    self.engineNames = engineNames
    self.classCount = classCount
    referenceLogProbabilities = [Double](repeating: 0, count: classCount)
    candidateLogProbabilities = [Double](repeating: 0, count: classCount)
  }

  /// Scores one image. `logits[e]` holds the `classCount` logits of engine `engineNames[e]`.
  ///
  /// Non-finite logits make no meaningful prediction or similarity, so such an image is
  /// recorded as a skip with reason `non-finite-logits` naming the engine, and counted.
  public func record(
    index: Int, key: String, label: Int?, logits: [UnsafeBufferPointer<Float>]
  ) throws -> ImageRecord {
    guard logits.count == engineNames.count else {
      throw EvalError(
        .internal, "\(logits.count) logit buffers for \(engineNames.count) engines at \(key)")
    }
    for (name, buffer) in zip(engineNames, logits) {
      guard buffer.count == classCount else {
        throw EvalError(
          .internal,
          "engine \(name) gave \(buffer.count) logits for \(key), expected \(classCount)")
      }
      if buffer.contains(where: { !$0.isFinite }) {
        return .skipped(
          index: index, key: key, label: label, reason: "non-finite-logits",
          detail: "engine \(name) produced NaN or infinite logits for \(key)")
      }
    }
    var predictions = [String: EnginePrediction]()
    for (name, buffer) in zip(engineNames, logits) {
      predictions[name] = Self.topFive(buffer)
    }
    var paired = [String: LogitSimilarity]()
    if engineNames.count > 1 {
      let reference = logits[0]
      referenceLogProbabilities.withUnsafeMutableBufferPointer {
        Self.logSoftmax(reference, into: $0)
      }
      for e in 1..<engineNames.count {
        let candidate = logits[e]
        candidateLogProbabilities.withUnsafeMutableBufferPointer {
          Self.logSoftmax(candidate, into: $0)
        }
        let kl = referenceLogProbabilities.withUnsafeBufferPointer { p in
          candidateLogProbabilities.withUnsafeBufferPointer { q in
            Self.klDivergence(logP: p, logQ: q)
          }
        }
        paired[engineNames[e]] = LogitSimilarity(
          cosine: Self.cosine(reference, candidate), kl: kl)
      }
    }
    return ImageRecord(
      index: index, key: key, label: label, engines: predictions,
      paired: paired.isEmpty ? nil : paired)
  }

  /// Scores a batch. `logits[e]` is engine `e`'s output for the batch, image-major
  /// (`classCount` logits per image, at least `samples.count` images); `samples` are the
  /// batch's images in order. Slots beyond `samples.count` (a short last batch) are ignored.
  public func records(
    for samples: [(index: Int, key: String, label: Int?)], logits: [UnsafeBufferPointer<Float>]
  ) throws -> [ImageRecord] {
    for (name, buffer) in zip(engineNames, logits) where buffer.count < samples.count * classCount {
      throw EvalError(
        .internal,
        "engine \(name) output holds \(buffer.count) logits, fewer than \(samples.count) images × \(classCount)"
      )
    }
    var result = [ImageRecord]()
    result.reserveCapacity(samples.count)
    for (slot, sample) in samples.enumerated() {
      let range = slot * classCount..<(slot + 1) * classCount
      result.append(
        try record(
          index: sample.index, key: sample.key, label: sample.label,
          logits: logits.map { UnsafeBufferPointer(rebasing: $0[range]) }))
    }
    return result
  }

  /// The five largest logits (fewer with fewer classes) and their softmax probabilities.
  static func topFive(_ logits: UnsafeBufferPointer<Float>) -> EnginePrediction {
    let k = min(5, logits.count)
    var ids = [Int]()
    ids.reserveCapacity(k + 1)
    for i in 0..<logits.count {
      let v = logits[i]
      // Strictly greater keeps the earlier (lower) class id ahead on ties.
      if ids.count == k, let last = ids.last, !(v > logits[last]) { continue }
      var position = ids.count
      while position > 0 && v > logits[ids[position - 1]] { position -= 1 }
      ids.insert(i, at: position)
      if ids.count > k { ids.removeLast() }
    }
    var maximum = -Double.infinity
    for v in logits { maximum = max(maximum, Double(v)) }
    var sum = 0.0
    for v in logits { sum += exp(Double(v) - maximum) }
    let scores = ids.map { exp(Double(logits[$0]) - maximum) / sum }
    return EnginePrediction(top5: ids, scores: scores)
  }

  static func logSoftmax(
    _ logits: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Double>
  ) {
    var maximum = -Double.infinity
    for v in logits { maximum = max(maximum, Double(v)) }
    var sum = 0.0
    for v in logits { sum += exp(Double(v) - maximum) }
    let logSum = log(sum) + maximum
    for i in 0..<logits.count { output[i] = Double(logits[i]) - logSum }
  }

  static func klDivergence(
    logP: UnsafeBufferPointer<Double>, logQ: UnsafeBufferPointer<Double>
  ) -> Double {
    var kl = 0.0
    for i in 0..<logP.count { kl += exp(logP[i]) * (logP[i] - logQ[i]) }
    // Rounding can leave a tiny negative value for identical distributions; KL is never < 0.
    return max(0, kl)
  }

  /// Cosine of the angle between two logit vectors; 1 when both are zero, 0 when only one is.
  static func cosine(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> Double {
    var dot = 0.0
    var normA = 0.0
    var normB = 0.0
    for i in 0..<a.count {
      let x = Double(a[i])
      let y = Double(b[i])
      dot += x * y
      normA += x * x
      normB += y * y
    }
    if normA == 0 && normB == 0 { return 1 }
    if normA == 0 || normB == 0 { return 0 }
    return dot / (normA.squareRoot() * normB.squareRoot())
  }
}
