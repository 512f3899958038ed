import Foundation
import TestSupport
import Testing

@testable import Model

/// A random-weight model from scripts/reference/dnnl_make_test_model.py (`--width 16`), loaded.
func int8TestModel(_ kind: String, size: Int = 32, classes: Int = 10) throws -> Graph {
  let directory = try TestEnvironment.makeTemporaryDirectory("int8-\(kind)")
  defer { try? FileManager.default.removeItem(at: directory) }
  let model = directory.appendingPathComponent("\(kind).onnx")
  try PythonReference.run(
    script: "scripts/reference/dnnl_make_test_model.py",
    arguments: [kind, model.path, "--size", "\(size)", "--classes", "\(classes)", "--width", "16"])
  return try ONNXLoader.load(contentsOf: model)
}

/// A calibration feeder: `batches` batches of seeded uniform random values (batch `k` from
/// seed `seed + k`), each claiming `images` valid images, then the end of the data.
func seededBatches(
  _ batches: Int, images: Int, seed: UInt64, in range: ClosedRange<Float> = -2...2
) -> (UnsafeMutableBufferPointer<Float>) throws -> Int {
  var served = 0
  return { buffer in
    guard served < batches else { return 0 }
    served += 1
    _ = buffer.update(
      fromContentsOf: randomValues(buffer.count, seed: seed + UInt64(served), in: range))
    return images
  }
}

/// One batch through an engine: `input` in, `batchSize · classCount` logits out.
func runEngine(_ engine: some InferenceEngine, _ input: [Float]) throws -> [Float] {
  var output = [Float](repeating: .nan, count: engine.batchSize * engine.classCount)
  try input.withUnsafeBufferPointer { x in
    try output.withUnsafeMutableBufferPointer { try engine.run(input: x, output: $0) }
  }
  return output
}

/// Runs a oneDNN kernel once: `bind` receives the input's and the output's bytes, the stream is
/// waited for, and the output (which starts as `output`, e.g. a residual) is returned.
func runKernel<In, Out>(
  _ engine: DNNLEngine, input: [In], output: [Out],
  bind: (UnsafeMutableRawPointer, UnsafeMutableRawPointer) throws -> DNNLExecution
) throws -> [Out] {
  var source = input
  var destination = output
  try source.withUnsafeMutableBytes { x in
    try destination.withUnsafeMutableBytes { y in
      try bind(x.baseAddress!, y.baseAddress!).run()
      try engine.wait()
    }
  }
  return destination
}
