import Dataset
import Foundation
import TestSupport
import Testing

@testable import Model

/// How onnxruntime's run of an exported QDQ model compares with the engine it was exported from.
struct QDQComparison: CustomStringConvertible {
  var label: String
  var images: Int
  var elements: Int
  /// The engine's output scale: one LSB.
  var lsb: Float
  /// Elements with |ours − onnxruntime| ≤ 1 LSB.
  var withinOneLSB: Int
  /// The largest difference, in LSB.
  var maxDifferenceLSB: Float
  /// Images whose top-1 class is the same.
  var sameTop1: Int
  /// What `scripts/reference/qdq_onnxruntime.py` reported (op counts, optimised graph).
  var report: [String: Any]

  var withinFraction: Double { Double(withinOneLSB) / Double(max(elements, 1)) }
  var top1Fraction: Double { Double(sameTop1) / Double(max(images, 1)) }

  func count(_ op: String, optimized: Bool = false) -> Int {
    ((report[optimized ? "optimized_ops" : "ops"] as? [String: Any])?[op] as? Int) ?? 0
  }

  var description: String {
    String(
      format:
        "%@: %d images, %.4f%% of %d logits within 1 LSB (%.3g), max %.2f LSB, top-1 identical %.2f%%; onnxruntime optimised ops %@",
      label, images, 100 * withinFraction, elements, lsb, maxDifferenceLSB, 100 * top1Fraction,
      "\((report["optimized_ops"] as? [String: Any]).map { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") } ?? "-")"
    )
  }
}

enum QDQHarness {
  /// Runs `engine` on `images` (NCHW floats, whole images) batch by batch, exports it, runs the
  /// export with onnxruntime (at another batch size) and compares the outputs.
  static func compare(
    _ engine: Int8Engine, images: [Float], label: String, optimization: String = "all",
    shiftingSignedCodes: Bool = true
  ) throws -> QDQComparison {
    let perImage = engine.inputShape.dropFirst().reduce(1, *)
    let count = images.count / perImage
    let classes = engine.classCount
    var ours = [Float](repeating: 0, count: count * classes)
    var input = [Float](repeating: 0, count: engine.batchSize * perImage)
    var output = [Float](repeating: 0, count: engine.batchSize * classes)
    var start = 0
    while start < count {
      let n = min(engine.batchSize, count - start)
      for i in input.indices { input[i] = 0 }
      input.replaceSubrange(
        0..<(n * perImage), with: images[(start * perImage)..<((start + n) * perImage)])
      try input.withUnsafeBufferPointer { x in
        try output.withUnsafeMutableBufferPointer { try engine.run(input: x, output: $0) }
      }
      ours.replaceSubrange(
        (start * classes)..<((start + n) * classes), with: output[0..<(n * classes)])
      start += n
    }

    let directory = try TestEnvironment.makeTemporaryDirectory("qdq-export")
    defer { try? FileManager.default.removeItem(at: directory) }
    let model = directory.appendingPathComponent("model.onnx")
    try engine.quantizedModel(
      producerVersion: "test", metadata: [:], shiftingSignedCodes: shiftingSignedCodes
    ).write(to: model)
    if let keep = ProcessInfo.processInfo.environment["QDQ_KEEP_DIR"] {
      let name = label.filter { $0.isLetter || $0.isNumber }
      try? FileManager.default.copyItem(
        at: model, to: URL(fileURLWithPath: keep).appendingPathComponent("\(name).onnx"))
    }
    let inputFile = directory.appendingPathComponent("input.npy")
    let outputFile = directory.appendingPathComponent("output.npy")
    try NumpyFile.write(
      NumpyArray(shape: [count] + engine.inputShape.dropFirst(), values: images), to: inputFile)
    if let keep = ProcessInfo.processInfo.environment["QDQ_KEEP_DIR"] {
      // For offline analysis: the images and the engine's logits next to the model.
      let name = label.filter { $0.isLetter || $0.isNumber }
      let folder = URL(fileURLWithPath: keep)
      try? FileManager.default.copyItem(
        at: inputFile, to: folder.appendingPathComponent("\(name)-input.npy"))
      try? NumpyFile.write(
        NumpyArray(shape: [count, classes], values: ours),
        to: folder.appendingPathComponent("\(name)-ours.npy"))
    }
    let stdout = try PythonReference.run(
      script: "scripts/reference/qdq_onnxruntime.py",
      arguments: [
        model.path, inputFile.path, outputFile.path, "--batch", "\(engine.batchSize + 3)",
        "--optimization", optimization,
      ])
    let report =
      (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:]
    let theirs = try NumpyFile.read(outputFile).values(as: Float.self)
    guard theirs.count == ours.count else {
      throw ModelError(
        .invalidGraph, "onnxruntime gave \(theirs.count) values, the engine \(ours.count)")
    }
    let lsb = engine.params[engine.graph.outputs[0]]?.scale ?? 1
    var within = 0
    var maxDifference: Float = 0
    for (a, b) in zip(ours, theirs) {
      let d = abs(a - b) / lsb
      maxDifference = max(maxDifference, d.isNaN ? .infinity : d)
      if d <= 1.0001 { within += 1 }
    }
    func top1(_ v: [Float], _ row: Int) -> Int {
      let slice = v[(row * classes)..<((row + 1) * classes)]
      return (slice.indices.max { v[$0] < v[$1] } ?? 0) - row * classes
    }
    let same = (0..<count).filter { top1(ours, $0) == top1(theirs, $0) }.count
    return QDQComparison(
      label: label, images: count, elements: ours.count, lsb: lsb, withinOneLSB: within,
      maxDifferenceLSB: maxDifference, sameTop1: same, report: report)
  }

  /// Calibration batches of seeded random images in [-2, 2].
  static func randomFeeder(batches: Int, batchSize: Int, seed: UInt64 = 11)
    -> (UnsafeMutableBufferPointer<Float>) throws -> Int
  {
    var served = 0
    return { buffer in
      guard served < batches else { return 0 }
      served += 1
      let values = randomValues(buffer.count, seed: seed + UInt64(served), in: -2...2)
      _ = buffer.update(fromContentsOf: values)
      return batchSize
    }
  }
}
