import Foundation
import Model

@testable import Eval

/// A deterministic stand-in for a real engine: the logits of an image are a pseudo-random
/// function of the sample index stored in its first input element, biased towards the label
/// so accuracy is realistic; `noise` perturbs them the way quantization would.
final class FakeEngine: InferenceEngine {
  let name: String
  let inputShape: [Int]
  let classCount: Int
  let versionInfo: [String: String]
  private let noise: Float
  private let strength: Float

  init(name: String, batchSize: Int, classCount: Int, noise: Float, strength: Float = 2.2) {
    self.name = name
    inputShape = [batchSize, 4]
    self.classCount = classCount
    versionInfo = ["library": "fake-1.0", "isa": "none"]
    self.noise = noise
    self.strength = strength
  }

  func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>) throws {
    for b in 0..<batchSize {
      let sample = Int(input[b * 4])
      let label = Int(input[b * 4 + 1])
      var state = UInt64(truncatingIfNeeded: sample) &* 0x9E37_79B9_7F4A_7C15 &+ 12345
      var noiseState =
        state ^ UInt64(truncatingIfNeeded: name.utf8.reduce(0) { $0 &* 31 &+ Int($1) })
      for c in 0..<classCount {
        var value = Float(FakeEngine.next(&state)) * 3
        if c == label { value += strength }
        value += noise * (Float(FakeEngine.next(&noiseState)) - 0.5)
        output[b * classCount + c] = value
      }
    }
  }

  /// xorshift64*, mapped to [0, 1).
  static func next(_ state: inout UInt64) -> Double {
    state ^= state >> 12
    state ^= state << 25
    state ^= state >> 27
    return Double((state &* 2_685_821_657_736_338_717) >> 11) / Double(1 << 53)
  }
}

enum Fixture {
  static let classCount = 10
  static let classNames = (0..<10).map { "class-\($0)" }

  static func manifest(shard: Shard = .whole, engines: [String] = ["float", "int8"]) -> RunManifest
  {
    RunManifest(
      model: .init(
        name: "Fake Net", path: "/models/fake.onnx", sha256: String(repeating: "ab", count: 32),
        parameterCount: 3_900_000, inputShape: [1, 3, 224, 224], classCount: classCount),
      dataset: "synthetic:600", labelSource: "synthetic",
      preprocessing: ["preset": "fake", "crop_pct": "0.875"],
      calibration: ["method": "minmax", "images": "32"], engines: engines,
      engineVersions: RunManifest.versions(
        of: engines.map { FakeEngine(name: $0, batchSize: 1, classCount: classCount, noise: 0) }),
      shard: shard)
  }

  static func key(_ index: Int) -> String { String(format: "ILSVRC2012_val_%08d.JPEG", index + 1) }
  static func label(_ index: Int) -> Int { (index * 7) % classCount }

  /// Runs the fake engines over the samples of `shard` (the loop the `run` command will
  /// have), appending batches to a log. Every 97th sample is skipped as a decode failure.
  /// Stops after `stopAfterBatches` batches when given, as a crash would.
  static func run(
    sampleCount: Int, shard: Shard, log: ResultLog, batchSize: Int = 8,
    stopAfterBatches: Int? = nil
  ) throws {
    let engines = [
      FakeEngine(name: "float", batchSize: batchSize, classCount: classCount, noise: 0),
      FakeEngine(name: "int8", batchSize: batchSize, classCount: classCount, noise: 1.6),
    ]
    let builder = try RecordBuilder(engineNames: ["float", "int8"], classCount: classCount)
    let start = (log.lastIndex ?? -1) + 1
    let indices = (start..<sampleCount).filter { shard.contains($0) }
    var input = [Float](repeating: 0, count: batchSize * 4)
    var outputs = engines.map { _ in [Float](repeating: 0, count: batchSize * classCount) }
    var batches = 0
    var position = 0
    while position < indices.count {
      if let stopAfterBatches, batches == stopAfterBatches { return }
      let batch = Array(indices[position..<min(position + batchSize, indices.count)])
      position += batch.count
      var records = [ImageRecord]()
      var evaluated = [Int]()
      for index in batch {
        if index % 97 == 5 {
          records.append(
            .skipped(
              index: index, key: key(index), label: label(index), reason: "decode",
              detail: "corrupt JPEG in \(key(index))"))
        } else {
          evaluated.append(index)
        }
      }
      for (slot, index) in evaluated.enumerated() {
        input[slot * 4] = Float(index)
        input[slot * 4 + 1] = Float(label(index))
      }
      for (e, engine) in engines.enumerated() {
        try input.withUnsafeBufferPointer { i in
          try outputs[e].withUnsafeMutableBufferPointer { try engine.run(input: i, output: $0) }
        }
      }
      let scored = try outputs[0].withUnsafeBufferPointer { f in
        try outputs[1].withUnsafeBufferPointer { q in
          try builder.records(
            for: evaluated.map { (index: $0, key: key($0), label: label($0)) }, logits: [f, q])
        }
      }
      records.append(contentsOf: scored)
      records.sort { $0.index < $1.index }
      try log.append(records)
      batches += 1
    }
  }

  /// A complete run into `directory`, finished and reported.
  @discardableResult
  static func completeRun(sampleCount: Int, shard: Shard, directory: URL) throws -> Summary {
    let manifest = manifest(shard: shard)
    let log = try ResultLog(directory: directory, manifest: manifest, resume: false)
    try run(sampleCount: sampleCount, shard: shard, log: log)
    try log.finish(datasetSampleCount: sampleCount, wallSeconds: 1.5)
    return try RunOutput.write(
      records: log.records, manifest: manifest, directory: directory,
      commandLine: ["imagenet-eval", "run"], wallSeconds: 1.5, classNames: classNames)
  }

  /// The summary with provenance removed, re-encoded canonically: the "metrics part".
  static func metricsBytes(_ url: URL) throws -> Data {
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    var metrics = object
    metrics.removeValue(forKey: "provenance")
    return try JSONSerialization.data(withJSONObject: metrics, options: [.sortedKeys])
  }
}
