import Dataset
import Foundation
import TestSupport
import Testing

@testable import Model

/// Calibration time of EfficientNet-Lite0 on 100 of the shared images, through the float
/// engine and through the reference evaluator (the path used before). Not part of the normal
/// suite: it asserts nothing about speed and runs only with IMAGENET_EVAL_BENCH_CALIBRATION=1.
@Suite("calibration benchmark")
struct CalibrationBenchmark {
  static let enabled = ProcessInfo.processInfo.environment["IMAGENET_EVAL_BENCH_CALIBRATION"] == "1"
  static let model = TestEnvironment.packageRoot.appendingPathComponent(
    "models/efficientnet-lite0.onnx")

  @Test(
    "EfficientNet-Lite0, 100 images, batch 20: observation time per path",
    .enabled(if: enabled, "set IMAGENET_EVAL_BENCH_CALIBRATION=1"),
    .enabled(if: TestEnvironment.sharedAvailable, "needs ../shared"))
  func lite0() throws {
    let graph = try ONNXLoader.load(contentsOf: Self.model)
    let environment = ProcessInfo.processInfo.environment
    let images = environment["IMAGENET_EVAL_BENCH_IMAGES"].flatMap { Int($0) } ?? 100
    let paths = environment["IMAGENET_EVAL_BENCH_PATHS"] ?? "float,reference"
    for path in paths.split(separator: ",") {
      let pipeline = try Pipeline(
        source: DataSource(paths: [
          TestEnvironment.sharedRoot.appendingPathComponent(
            "datasets/ilsvrc2012-val-subset-1300.tar"
          ).path
        ]),
        classes: ClassIndex.imageNet1k(), batchSize: 20, options: .init(limit: images),
        transformFactory: { try Preprocessor(preset: .efficientnetLite) })
      let start = Date()
      let observation = try Int8Engine.observe(
        graph: graph, batchSize: 20, imageCount: images, threads: nil,
        referenceEvaluator: path == "reference"
      ) { buffer in
        guard let batch = try pipeline.next() else { return 0 }
        _ = buffer.update(fromContentsOf: batch.tensor)
        return batch.count
      }
      let observed = Date().timeIntervalSince(start)
      let thresholdStart = Date()
      for method in CalibrationMethod.allCases { _ = try observation.session.thresholds(method) }
      let thresholds = Date().timeIntervalSince(thresholdStart)
      print(
        "calibration \(path): \(observation.imageCount) images observed in "
          + String(
            format: "%.1f s (incl. decoding); thresholds of all 4 methods %.1f s", observed,
            thresholds))
    }
  }
}
