import Foundation

/// Everything measured about a run, computed from its records alone, so a merge of shards
/// is a plain recomputation and yields the same bytes as an unsharded run.
///
/// Accuracies are percentages at full `Double` precision (timm's convention of percent, e.g.
/// `82.38`, without its rounding); reports round for display. Drops are percentage points.
public struct Metrics: Codable, Sendable, Equatable {
  /// Samples that were evaluated (not skipped).
  public var images: Int
  /// All samples in the log, evaluated or skipped.
  public var samples: Int
  /// Per engine name.
  public var engines: [String: EngineMetrics]
  /// The reference engine (first) against the primary candidate (second); nil with one engine.
  public var paired: PairedMetrics?
  /// The reference against each further candidate (e.g. `int8-rgb`), by candidate name.
  public var pairedAdditional: [String: PairedMetrics]?
  /// Per class, ascending class id.
  public var perClass: [ClassMetrics]
  /// Samples that could not be evaluated.
  public var skipped: SkipSummary
  /// The reference → candidate drop split at the same engine run on the reference's input
  /// path (`int8` on NV12 vs `int8-rgb`); nil unless both engines ran.
  public var dropSplit: DropSplit? = nil

  enum CodingKeys: String, CodingKey {
    case images, samples, engines, paired, skipped
    case pairedAdditional = "paired_additional"
    case perClass = "per_class"
    case dropSplit = "drop_split"
  }

  /// The suffix of the engine name that runs a candidate engine on the reference engine's
  /// input tensor (`int8` → `int8-rgb`).
  public static let referenceInputSuffix = "-rgb"

  /// How many confusion pairs to keep per engine.
  public static let confusionLimit = 20

  /// Computes every metric from `records` of engines `engineNames` (reference first).
  ///
  /// Records may come in any order; they are sorted by sample index so sums run in one
  /// deterministic order. Duplicate indices, unlabelled evaluated records and records
  /// missing an engine are errors naming the record.
  public static func compute(
    records unsorted: [ImageRecord], engineNames: [String], classNames: [String]? = nil
  ) throws -> Metrics {
    guard !engineNames.isEmpty else { throw EvalError(.input, "no engines to compute metrics for") }
    let records = unsorted.sorted { $0.index < $1.index }
    for (a, b) in zip(records, records.dropFirst()) where a.index == b.index {
      throw EvalError(
        .inconsistentRun, "sample index \(a.index) is recorded twice (\(a.key), \(b.key))")
    }
    func name(_ id: Int) -> String? {
      guard let classNames, id >= 0, id < classNames.count else { return nil }
      return classNames[id]
    }

    var evaluated = [(record: ImageRecord, label: Int, predictions: [EnginePrediction])]()
    var skipItems = [SkippedSample]()
    for record in records {
      if let skip = record.skip {
        skipItems.append(
          SkippedSample(
            index: record.index, key: record.key, reason: skip.reason, detail: skip.detail))
        continue
      }
      guard let label = record.label else {
        throw EvalError(
          .input, "record \(record.key) (sample \(record.index)) was evaluated but has no label")
      }
      var predictions = [EnginePrediction]()
      for engine in engineNames {
        guard let prediction = record.engines?[engine], !prediction.top5.isEmpty else {
          throw EvalError(
            .input,
            "record \(record.key) (sample \(record.index)) has no prediction from engine \(engine)")
        }
        predictions.append(prediction)
      }
      evaluated.append((record, label, predictions))
    }

    var engines = [String: EngineMetrics]()
    // correct[e][label] and count[label], for the per-class table.
    var perClassCount = [Int: Int]()
    var perClassCorrect = [[Int: Int]](repeating: [:], count: engineNames.count)
    for (e, engine) in engineNames.enumerated() {
      var top1 = 0
      var top5 = 0
      var confusions = [Pair: Int]()
      for item in evaluated {
        let prediction = item.predictions[e]
        if prediction.top5[0] == item.label {
          top1 += 1
          perClassCorrect[e][item.label, default: 0] += 1
        } else {
          confusions[Pair(a: item.label, b: prediction.top5[0]), default: 0] += 1
        }
        if prediction.top5.prefix(5).contains(item.label) { top5 += 1 }
        if e == 0 { perClassCount[item.label, default: 0] += 1 }
      }
      let top = confusions.sorted {
        ($1.value, $0.key.a, $0.key.b) < ($0.value, $1.key.a, $1.key.b)
      }.prefix(confusionLimit)
      engines[engine] = EngineMetrics(
        images: evaluated.count, top1Correct: top1, top5Correct: top5,
        topConfusions: top.map {
          Confusion(
            trueClass: $0.key.a, predicted: $0.key.b, count: $0.value, trueName: name($0.key.a),
            predictedName: name($0.key.b))
        })
    }

    var pairs = [String: PairedMetrics]()
    if engineNames.count > 1 {
      for c in 1..<engineNames.count {
        var agree = 0
        var rightToWrong = 0
        var wrongToRight = 0
        var cosineSum = 0.0
        var klSum = 0.0
        var similarityCount = 0
        for item in evaluated {
          let r = item.predictions[0].top5[0]
          let k = item.predictions[c].top5[0]
          if r == k { agree += 1 }
          if r == item.label && k != item.label { rightToWrong += 1 }
          if r != item.label && k == item.label { wrongToRight += 1 }
          if let similarity = item.record.paired?[engineNames[c]] {
            cosineSum += similarity.cosine
            klSum += similarity.kl
            similarityCount += 1
          }
        }
        let reference = engines[engineNames[0]]!
        let candidate = engines[engineNames[c]]!
        pairs[engineNames[c]] = PairedMetrics(
          reference: engineNames[0], candidate: engineNames[c], images: evaluated.count,
          top1Drop: difference(reference.top1, candidate.top1),
          top5Drop: difference(reference.top5, candidate.top5),
          agreement: percent(agree, evaluated.count),
          flips: Flips(rightToWrong: rightToWrong, wrongToRight: wrongToRight),
          mcnemarP: Statistics.mcnemarExactP(b: rightToWrong, c: wrongToRight),
          cosine: similarityCount > 0 ? cosineSum / Double(similarityCount) : nil,
          kl: similarityCount > 0 ? klSum / Double(similarityCount) : nil,
          similarityImages: similarityCount)
      }
    }

    let perClass = perClassCount.keys.sorted().map { label -> ClassMetrics in
      let count = perClassCount[label]!
      var top1 = [String: Double]()
      var correct = [String: Int]()
      for (e, engine) in engineNames.enumerated() {
        let k = perClassCorrect[e][label, default: 0]
        correct[engine] = k
        top1[engine] = percent(k, count)
      }
      var drop: Double?
      if engineNames.count > 1 {
        drop = difference(top1[engineNames[0]], top1[engineNames[1]])
      }
      return ClassMetrics(
        classID: label, name: name(label), images: count, correct: correct, top1: top1, drop: drop)
    }

    var byReason = [String: Int]()
    for item in skipItems { byReason[item.reason, default: 0] += 1 }
    var additional = pairs
    let primary = engineNames.count > 1 ? additional.removeValue(forKey: engineNames[1]) : nil
    var split: DropSplit?
    // With the same-input engine as the reference itself there is nothing to split.
    for candidate in engineNames.dropFirst()
    where engineNames.dropFirst().contains(candidate + referenceInputSuffix) {
      let viaReference = candidate + referenceInputSuffix
      split = DropSplit(
        reference: engineNames[0], sameInput: viaReference, candidate: candidate,
        top1: [engineNames[0], viaReference, candidate].map { engines[$0]?.top1 })
      break
    }
    return Metrics(
      images: evaluated.count, samples: records.count, engines: engines, paired: primary,
      pairedAdditional: additional.isEmpty ? nil : additional, perClass: perClass,
      skipped: SkipSummary(total: skipItems.count, byReason: byReason, samples: skipItems),
      dropSplit: split)
  }

  /// The classes whose top-1 fell the most from reference to primary candidate: largest
  /// drop first, ties by class id.
  public func worstClasses(limit: Int = 20) -> [ClassMetrics] {
    perClass.filter { $0.drop != nil }
      .sorted { ($1.drop!, $0.classID) < ($0.drop!, $1.classID) }
      .prefix(limit).map { $0 }
  }
}

private struct Pair: Hashable {
  var a: Int
  var b: Int
}

func percent(_ part: Int, _ whole: Int) -> Double? {
  whole > 0 ? 100 * Double(part) / Double(whole) : nil
}

func difference(_ a: Double?, _ b: Double?) -> Double? {
  guard let a, let b else { return nil }
  return a - b
}

/// Accuracy of one engine.
public struct EngineMetrics: Codable, Sendable, Equatable {
  /// Evaluated images.
  public var images: Int
  /// Images whose top-1 class is the label.
  public var top1Correct: Int
  /// Images whose label is among the top 5.
  public var top5Correct: Int
  /// Top-1 accuracy in percent; nil without images.
  public var top1: Double?
  /// Top-5 accuracy in percent; nil without images.
  public var top5: Double?
  /// Wilson 95% score interval of top-1, in percent.
  public var top1CI95: [Double]
  /// Wilson 95% score interval of top-5, in percent.
  public var top5CI95: [Double]
  /// The most frequent (true → predicted) top-1 mistakes, most frequent first.
  public var topConfusions: [Confusion]

  init(images: Int, top1Correct: Int, top5Correct: Int, topConfusions: [Confusion]) {
    self.images = images
    self.top1Correct = top1Correct
    self.top5Correct = top5Correct
    (top1, top1CI95) = Self.accuracy(top1Correct, of: images)
    (top5, top5CI95) = Self.accuracy(top5Correct, of: images)
    self.topConfusions = topConfusions
  }

  /// `correct` of `images` in percent, with its Wilson 95% interval in percent.
  private static func accuracy(_ correct: Int, of images: Int) -> (Double?, [Double]) {
    let interval = Statistics.wilsonInterval(successes: correct, trials: images)
    return (percent(correct, images), [100 * interval.lower, 100 * interval.upper])
  }

  enum CodingKeys: String, CodingKey {
    case images, top1, top5
    case top1Correct = "top1_correct"
    case top5Correct = "top5_correct"
    case top1CI95 = "top1_ci95"
    case top5CI95 = "top5_ci95"
    case topConfusions = "top_confusions"
  }
}

/// A frequent mistake: images of `trueClass` predicted as `predicted`.
public struct Confusion: Codable, Sendable, Equatable {
  /// The label.
  public var trueClass: Int
  /// The engine's top-1 class.
  public var predicted: Int
  /// How many images.
  public var count: Int
  /// Name of the label class, when class names are known.
  public var trueName: String?
  /// Name of the predicted class, when class names are known.
  public var predictedName: String?

  enum CodingKeys: String, CodingKey {
    case predicted, count
    case trueClass = "true"
    case trueName = "true_name"
    case predictedName = "predicted_name"
  }
}

/// A candidate's top-1 drop in two parts: quantisation (the reference against the candidate
/// engine fed the reference's own input tensor) and input path (that against the candidate
/// on its own input path, e.g. NV12). The parts are differences of the same three top-1
/// values over the same images, so they add up to the total exactly.
public struct DropSplit: Codable, Sendable, Equatable {
  /// Reference engine, e.g. `float`.
  public var reference: String
  /// The candidate engine on the reference's input tensor, e.g. `int8-rgb`.
  public var sameInput: String
  /// The candidate on its own input path, e.g. `int8` (NV12).
  public var candidate: String
  /// Reference top-1 minus candidate top-1, in points.
  public var total: Double?
  /// Reference top-1 minus same-input top-1: what quantisation costs.
  public var quantization: Double?
  /// Same-input top-1 minus candidate top-1: what the input path (NV12) costs.
  public var inputPath: Double?

  enum CodingKeys: String, CodingKey {
    case reference, candidate, total, quantization
    case sameInput = "same_input"
    case inputPath = "input_path"
  }

  /// The split of the top-1 accuracies `[reference, sameInput, candidate]`.
  init(reference: String, sameInput: String, candidate: String, top1: [Double?]) {
    self.reference = reference
    self.sameInput = sameInput
    self.candidate = candidate
    total = difference(top1[0], top1[2])
    quantization = difference(top1[0], top1[1])
    inputPath = difference(top1[1], top1[2])
  }
}

/// The reference engine against one candidate engine, image by image.
public struct PairedMetrics: Codable, Sendable, Equatable {
  /// Reference engine name, e.g. `float`.
  public var reference: String
  /// Candidate engine name, e.g. `int8`.
  public var candidate: String
  /// Evaluated images.
  public var images: Int
  /// Reference top-1 minus candidate top-1, in percentage points.
  public var top1Drop: Double?
  /// Reference top-5 minus candidate top-5, in percentage points.
  public var top5Drop: Double?
  /// Percent of images where both engines give the same top-1 class.
  public var agreement: Double?
  /// Images one engine got right and the other wrong.
  public var flips: Flips
  /// Exact two-sided McNemar p-value on the flips: how likely a difference at least this
  /// large is if both engines were equally accurate.
  public var mcnemarP: Double
  /// Mean cosine similarity of the logits.
  public var cosine: Double?
  /// Mean KL(P_reference ‖ P_candidate) of the softmax outputs, in nats.
  public var kl: Double?
  /// Images that contributed to `cosine` and `kl`.
  public var similarityImages: Int

  enum CodingKeys: String, CodingKey {
    case reference, candidate, images, agreement, flips, cosine, kl
    case top1Drop = "top1_drop"
    case top5Drop = "top5_drop"
    case mcnemarP = "mcnemar_p"
    case similarityImages = "similarity_images"
  }
}

/// Discordant pairs for McNemar's test.
public struct Flips: Codable, Sendable, Equatable {
  /// Reference right, candidate wrong (top-1).
  public var rightToWrong: Int
  /// Reference wrong, candidate right (top-1).
  public var wrongToRight: Int

  enum CodingKeys: String, CodingKey {
    case rightToWrong = "right_to_wrong"
    case wrongToRight = "wrong_to_right"
  }
}

/// Top-1 of every engine on one class.
public struct ClassMetrics: Codable, Sendable, Equatable {
  /// The class id.
  public var classID: Int
  /// The class name, when known.
  public var name: String?
  /// Evaluated images of this class.
  public var images: Int
  /// Top-1 correct images per engine.
  public var correct: [String: Int]
  /// Top-1 percent per engine.
  public var top1: [String: Double]
  /// Reference minus primary candidate top-1, in points.
  public var drop: Double?

  enum CodingKeys: String, CodingKey {
    case name, images, correct, top1, drop
    case classID = "class"
  }
}

/// Skipped samples, counted by reason and listed.
public struct SkipSummary: Codable, Sendable, Equatable {
  /// How many samples were skipped.
  public var total: Int
  /// Count per short reason.
  public var byReason: [String: Int]
  /// Every skipped sample, in sample order.
  public var samples: [SkippedSample]

  enum CodingKeys: String, CodingKey {
    case total, samples
    case byReason = "by_reason"
  }
}

/// One skipped sample.
public struct SkippedSample: Codable, Sendable, Equatable {
  /// Sample index.
  public var index: Int
  /// Sample key.
  public var key: String
  /// Short reason.
  public var reason: String
  /// Full message.
  public var detail: String
}
