import Foundation
import Testing

@testable import Eval

@Suite struct RecordCodingTests {
  static func randomRecord(_ i: Int, using generator: inout SystemRandomNumberGenerator)
    -> ImageRecord
  {
    let keys = [
      "ILSVRC2012_val_00000001.JPEG", "quote\"back\\slash", "new\nline\ttab", "ünïcødé/图像",
      "ctl\u{01}",
    ]
    let key = keys[i % keys.count]
    if i % 7 == 3 {
      return .skipped(
        index: i, key: key, label: i % 2 == 0 ? nil : 5, reason: "decode",
        detail: "bad \"JPEG\"\n\(key)")
    }
    func scores() -> [Double] {
      (0..<5).map { _ in
        [0, 1, 1e-300, Double.leastNonzeroMagnitude, Double.random(in: 0...1, using: &generator)]
          .randomElement(
            using: &generator)!
      }
    }
    return ImageRecord(
      index: i, key: key, label: Int.random(in: 0..<1000, using: &generator),
      engines: [
        "float": EnginePrediction(
          top5: (0..<5).map { _ in Int.random(in: 0..<1000, using: &generator) }, scores: scores()),
        "int8-rgb": EnginePrediction(top5: [1, 2], scores: [0.75, 0.25]),
        "int8": EnginePrediction(top5: [3], scores: [1]),
      ],
      paired: [
        "int8": LogitSimilarity(cosine: Double.random(in: -1...1, using: &generator), kl: 1e-17),
        "int8-rgb": LogitSimilarity(cosine: 1, kl: 0),
      ])
  }

  @Test func fastCodecAgreesWithFoundation() throws {
    var generator = SystemRandomNumberGenerator()
    let encoder = JSONEncoder.compactCanonical
    let decoder = JSONDecoder()
    for i in 0..<500 {
      let record = Self.randomRecord(i, using: &generator)
      var bytes = [UInt8]()
      RecordCoding.encode(record, into: &bytes)
      // Foundation reads what we write, exactly.
      #expect(try decoder.decode(ImageRecord.self, from: Data(bytes)) == record, "record \(i)")
      // We read what we write, and what Foundation writes.
      #expect(bytes.withUnsafeBufferPointer { RecordCoding.decode($0) } == record, "record \(i)")
      let foundation = try [UInt8](encoder.encode(record))
      #expect(
        foundation.withUnsafeBufferPointer { RecordCoding.decode($0) } == record, "record \(i)")
    }
  }

  @Test func malformedLinesAreRejectedForTheSlowPath() {
    for text in [
      "", "{", "{\"index\":1}", "{\"index\":1,\"key\":\"a\"} x", "{\"index\":1.5,\"key\":\"a\"}",
      "[1]",
      "{\"index\":1,\"key\":\"a\",\"extra\":2}",
    ] {
      let bytes = Array(text.utf8)
      #expect(bytes.withUnsafeBufferPointer { RecordCoding.decode($0) } == nil, "\(text)")
    }
  }
}
