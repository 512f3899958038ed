import Dataset
import Foundation
import Model
import TestSupport
import Testing

private let efficientNetLite0 = TestEnvironment.packageRoot.appendingPathComponent(
  "models/efficientnet-lite0.onnx")

/// EfficientNet-Lite0 (real weights) quantised by `Int8Engine` on 100 calibration images from
/// the 1300 shared ILSVRC2012 images: every calibration method must stay within 1.5 top-1
/// points of the float engine on all 1300.
@Suite(
  "Int8 accuracy on EfficientNet-Lite0",
  .enabled(if: TestEnvironment.sharedAvailable, "needs ../shared (the 1300-image subset)"),
  .enabled(
    if: FileManager.default.fileExists(atPath: efficientNetLite0.path),
    "needs models/efficientnet-lite0.onnx (run scripts/setup-assets.sh)"))
struct Int8AccuracyTests {
  static let batch = 20

  private func pipeline(limit: Int?) throws -> Pipeline {
    try Pipeline(
      source: DataSource(paths: [
        TestEnvironment.sharedRoot.appendingPathComponent(
          "datasets/ilsvrc2012-val-subset-1300.tar"
        ).path
      ]),
      classes: ClassIndex.imageNet1k(), batchSize: Self.batch,
      options: .init(limit: limit),
      transformFactory: { try Preprocessor(preset: .efficientnetLite) })
  }

  @Test("top-1 drop <= 1.5 points for max, percentile, kl, mse and default")
  func accuracy() throws {
    let graph = try ONNXLoader.load(contentsOf: efficientNetLite0)
    let calibrationImages = try pipeline(limit: 100)
    let started = Date()
    let observation = try Int8Engine.observe(
      graph: graph, batchSize: Self.batch, imageCount: 100
    ) { buffer in
      guard let batch = try calibrationImages.next() else { return 0 }
      _ = buffer.update(fromContentsOf: batch.tensor)
      return batch.count
    }
    let observeSeconds = Date().timeIntervalSince(started)
    #expect(observation.imageCount == 100)

    // Which tensors KL clips hardest relative to their maximum (what went wrong before the
    // zero-bin fix: every ReLU6 output clipped at 255/2048 of its range).
    let kl = try observation.calibration(settings: Int8Settings(method: .kl))
    let max = try observation.calibration(settings: Int8Settings(method: .max))
    let clipped = kl.thresholds.compactMap { name, t -> (String, Float)? in
      guard let m = max.thresholds[name], m > 0 else { return nil }
      return (name, t / m)
    }.sorted { $0.1 < $1.1 }.prefix(8)
    print(
      "KL threshold / max, smallest: " + clipped.map { "\($0.0) \($0.1)" }.joined(separator: ", "))

    // KL on every real activation histogram equals the independent numpy implementation of
    // TensorRT's entropy calibration (scripts/reference/quant_kl.py).
    if TestEnvironment.pythonAvailable {
      try checkKLAgainstReference(observation.observers)
    }

    let float = try FloatEngine(graph: graph, batchSize: Self.batch)
    var engines: [(String, Int8Engine)] = []
    var cosines: [String: Double] = [:]
    for method in Int8Settings.Method.allCases {
      let calibration = try observation.calibration(settings: Int8Settings(method: method))
      if method == .default {
        cosines = calibration.candidateCosines
      }
      engines.append(
        (
          "\(method.rawValue)→\(calibration.method.rawValue)",
          try Int8Engine(graph: graph, batchSize: Self.batch, calibration: calibration)
        ))
    }
    #expect(engines[0].1.floatFallbackNodes.isEmpty, "\(engines[0].1.floatFallbackNodes)")

    let images = try pipeline(limit: nil)
    var total = 0
    var floatHits = 0
    var hits = [Int](repeating: 0, count: engines.count)
    var logits = [Float](repeating: 0, count: Self.batch * float.classCount)
    func top1(_ row: Int) -> Int {
      let slice = logits[(row * float.classCount)..<((row + 1) * float.classCount)]
      return slice.indices.max { logits[$0] < logits[$1] }! - row * float.classCount
    }
    var report: LayerReport?
    while let batch = try images.next() {
      if report == nil, let (_, engine) = engines.last {
        report = try engine.layerReport(input: batch.tensor, images: batch.count)
      }
      try logits.withUnsafeMutableBufferPointer { try float.run(input: batch.tensor, output: $0) }
      for row in 0..<batch.count where top1(row) == batch.labels[row] { floatHits += 1 }
      for (index, (_, engine)) in engines.enumerated() {
        try logits.withUnsafeMutableBufferPointer {
          try engine.run(input: batch.tensor, output: $0)
        }
        for row in 0..<batch.count where top1(row) == batch.labels[row] { hits[index] += 1 }
      }
      total += batch.count
    }
    #expect(total == 1300)
    let floatTop1 = 100 * Double(floatHits) / Double(total)
    var lines = [
      "float top-1 \(floatTop1)% on \(total) images; observation (float engine, 100 images) \(String(format: "%.1f", observeSeconds)) s; default candidates \(cosines)"
    ]
    for (index, (label, _)) in engines.enumerated() {
      let top1 = 100 * Double(hits[index]) / Double(total)
      lines.append("int8 \(label): top-1 \(top1)% (drop \(floatTop1 - top1))")
      #expect(floatTop1 - top1 <= 1.5, "\(label): \(top1)% vs float \(floatTop1)%")
    }
    if let report, let engine = engines.last?.1 {
      #expect(report.layers.count == engine.quantizedNodes.count)
      lines.append(
        "worst layers (default): "
          + report.layers.prefix(5).map {
            "\($0.node) \($0.op) sqnr \(String(format: "%.1f", $0.sqnrDB)) dB cos \(String(format: "%.4f", $0.cosine))"
          }.joined(separator: "; "))
    }
    // Shown in the test log: the numbers the report quotes.
    print(lines.joined(separator: "\n"))
    #expect(floatTop1 > 60)
  }
}

/// Runs scripts/reference/quant_kl.py on every observed histogram and checks that our KL
/// threshold index is the reference's (or ties with it in floating point).
private func checkKLAgainstReference(_ observers: [TensorObserver]) throws {
  let usable = observers.filter { $0.histogram.contains { $0 > 0 } && $0.minimum != $0.maximum }
  let directory = try TestEnvironment.makeTemporaryDirectory("kl-lite0")
  defer { try? FileManager.default.removeItem(at: directory) }
  let file = directory.appendingPathComponent("histograms.json")
  try JSONSerialization.data(withJSONObject: usable.map { $0.histogram.map(Int.init) })
    .write(to: file)
  let output = try PythonReference.run(
    script: "scripts/reference/quant_kl.py", arguments: [file.path])
  let results = try #require(
    try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]])
  try #require(results.count == usable.count)
  var mismatches: [String] = []
  for (observer, reference) in zip(usable, results) {
    let t = try CalibrationAlgorithms.klThreshold(observer.histogram, binWidth: observer.binWidth)
    let mine = Int((t / observer.binWidth).rounded())
    let expected = try #require(reference["index"] as? Int)
    if mine == expected { continue }
    let divergences = try #require(reference["divergences"] as? [String: Any])
    let theirs = divergences[String(expected)] as? Double
    let atMine = divergences[String(mine)] as? Double
    if let theirs, let atMine, abs(theirs - atMine) <= 1e-9 * max(abs(theirs), 1e-12) { continue }
    mismatches.append("\(observer.name): \(mine) vs \(expected)")
  }
  #expect(mismatches.isEmpty, "KL differs from the reference on \(mismatches)")
  print("KL equals the numpy reference on \(usable.count) real activation histograms")
}
