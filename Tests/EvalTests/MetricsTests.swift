import Foundation
import Testing

@testable import Eval

@Suite struct MetricsTests {
  static func record(
    _ index: Int, label: Int, float: [Int], int8: [Int], cosine: Double, kl: Double
  ) -> ImageRecord {
    ImageRecord(
      index: index, key: "img\(index)", label: label,
      engines: [
        "float": EnginePrediction(top5: float, scores: float.map { _ in 0.2 }),
        "int8": EnginePrediction(top5: int8, scores: int8.map { _ in 0.2 }),
      ],
      paired: ["int8": LogitSimilarity(cosine: cosine, kl: kl)])
  }

  /// Six evaluated images and three skips whose every metric is worked out by hand below.
  static let records: [ImageRecord] = [
    record(0, label: 0, float: [0, 1, 2, 3, 4], int8: [0, 2, 1, 3, 4], cosine: 0.9, kl: 0.1),
    record(1, label: 0, float: [0, 1, 2, 3, 4], int8: [1, 0, 2, 3, 4], cosine: 0.8, kl: 0.2),
    record(2, label: 1, float: [2, 1, 0, 3, 4], int8: [1, 2, 0, 3, 4], cosine: 0.7, kl: 0.3),
    record(3, label: 1, float: [2, 3, 4, 5, 6], int8: [2, 1, 0, 3, 4], cosine: 0.6, kl: 0.4),
    record(4, label: 2, float: [2, 0, 1, 3, 4], int8: [0, 3, 4, 5, 6], cosine: 0.5, kl: 0.5),
    record(5, label: 2, float: [2, 0, 1, 3, 4], int8: [2, 0, 1, 3, 4], cosine: 0.4, kl: 0.6),
    .skipped(index: 6, key: "img6", label: 0, reason: "decode", detail: "corrupt img6"),
    .skipped(index: 7, key: "img7", label: 1, reason: "decode", detail: "corrupt img7"),
    .skipped(index: 8, key: "img8", label: nil, reason: "transform", detail: "too small"),
  ]

  @Test func everyMetricMatchesTheHandComputation() throws {
    let m = try Metrics.compute(
      records: Self.records, engineNames: ["float", "int8"], classNames: ["zero", "one", "two"])
    #expect(m.images == 6)
    #expect(m.samples == 9)
    let float = try #require(m.engines["float"])
    let int8 = try #require(m.engines["int8"])
    // float right on 0, 1, 4, 5; top-5 misses only image 3. int8 right on 0, 2, 5; misses 4.
    #expect(float.top1Correct == 4 && float.top5Correct == 5)
    #expect(int8.top1Correct == 3 && int8.top5Correct == 5)
    let expectedFloatTop1: Double = 400.0 / 6.0
    #expect(float.top1 == expectedFloatTop1)
    #expect(int8.top1 == 50)
    let expectedFloatTop5: Double = 500.0 / 6.0
    #expect(float.top5 == expectedFloatTop5)
    let w = Statistics.wilsonInterval(successes: 4, trials: 6)
    #expect(float.top1CI95 == [100 * w.lower, 100 * w.upper])

    let p = try #require(m.paired)
    #expect(p.reference == "float" && p.candidate == "int8")
    let expectedDrop: Double = 400.0 / 6.0 - 50.0
    #expect(p.top1Drop == expectedDrop)
    #expect(p.top5Drop == 0)
    // Same top-1 on images 0, 3, 5.
    #expect(p.agreement == 50)
    // float right → int8 wrong: images 1, 4; the reverse: image 2.
    #expect(p.flips == Flips(rightToWrong: 2, wrongToRight: 1))
    // n = 3, min = 1: 2·(1 + 3)/8 ≥ 1.
    #expect(p.mcnemarP == 1)
    #expect(abs(p.cosine! - 0.65) < 1e-12)
    #expect(abs(p.kl! - 0.35) < 1e-12)
    #expect(p.similarityImages == 6)

    // Per class: 0 → float 2/2, int8 1/2; 1 → 0/2, 1/2; 2 → 2/2, 1/2.
    #expect(m.perClass.map(\.classID) == [0, 1, 2])
    #expect(m.perClass.map(\.images) == [2, 2, 2])
    #expect(m.perClass.map { $0.top1["float"]! } == [100, 0, 100])
    #expect(m.perClass.map { $0.top1["int8"]! } == [50, 50, 50])
    #expect(m.perClass.map(\.drop) == [50, -50, 50])
    #expect(m.perClass.map(\.name) == ["zero", "one", "two"])
    #expect(m.worstClasses(limit: 2).map(\.classID) == [0, 2])

    // float confuses 1 → 2 twice; int8 makes three single mistakes, ordered by true class.
    #expect(float.topConfusions.map { [$0.trueClass, $0.predicted, $0.count] } == [[1, 2, 2]])
    #expect(
      int8.topConfusions.map { [$0.trueClass, $0.predicted, $0.count] } == [
        [0, 1, 1], [1, 2, 1], [2, 0, 1],
      ])
    #expect(
      int8.topConfusions[0].trueName == "zero" && int8.topConfusions[0].predictedName == "one")

    #expect(m.skipped.total == 3)
    #expect(m.skipped.byReason == ["decode": 2, "transform": 1])
    #expect(m.skipped.samples.map(\.key) == ["img6", "img7", "img8"])
    #expect(m.pairedAdditional == nil)
  }

  @Test func orderOfRecordsDoesNotChangeAByte() throws {
    let sorted = try Metrics.compute(records: Self.records, engineNames: ["float", "int8"])
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<5 {
      let shuffled = try Metrics.compute(
        records: Self.records.shuffled(using: &generator), engineNames: ["float", "int8"])
      #expect(
        try JSONEncoder.canonical.encode(shuffled) == JSONEncoder.canonical.encode(sorted))
    }
  }

  @Test func duplicatesAndMissingEnginesAreErrors() throws {
    let duplicate = Self.records + [Self.records[2]]
    #expect(throws: EvalError.self) {
      try Metrics.compute(records: duplicate, engineNames: ["float", "int8"])
    }
    #expect(throws: EvalError.self) {
      try Metrics.compute(records: Self.records, engineNames: ["float", "int8-rgb"])
    }
  }

  @Test func aRunWithNothingEvaluatedHasNullAccuracyNotNaN() throws {
    let m = try Metrics.compute(
      records: Array(Self.records.suffix(3)), engineNames: ["float", "int8"])
    #expect(m.images == 0)
    #expect(m.engines["float"]?.top1 == nil)
    #expect(m.engines["float"]?.top1CI95 == [0, 100])
    #expect(m.paired?.mcnemarP == 1)
    // Encodes (JSON has no NaN).
    _ = try JSONEncoder.canonical.encode(m)
  }

  @Test func thirdEngineIsPairedWithTheReferenceToo() throws {
    let records = Self.records.map { r -> ImageRecord in
      var r = r
      if let p = r.engines?["int8"] {
        r.engines?["int8-rgb"] = p
        let similarity = r.paired?["int8"]
        r.paired?["int8-rgb"] = similarity
      }
      return r
    }
    let m = try Metrics.compute(records: records, engineNames: ["float", "int8", "int8-rgb"])
    #expect(m.paired?.candidate == "int8")
    #expect(m.pairedAdditional?["int8-rgb"]?.flips == m.paired?.flips)
  }
}
