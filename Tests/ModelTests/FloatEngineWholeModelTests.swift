import Foundation
import TestSupport
import Testing

@testable import Model

/// The float engine on real architectures (the onnx package's "light" models with random
/// weights, prepared by the graph helper's scripts/reference/onnx_light_models.py) against
/// onnxruntime.
@Suite(
  "float engine on real architectures", .serialized,
  .enabled(
    if: TestEnvironment.pythonAvailable, Comment(rawValue: TestEnvironment.pythonMissingMessage)))
struct FloatEngineWholeModelTests {
  static let models: [String] = {
    #if DEBUG
      return ["squeezenet"]
    #else
      return ["squeezenet", "resnet50", "inception_v2"]
    #endif
  }()

  @Test("logits match onnxruntime within 1e-4 of their range, same top-5")
  func lightModels() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("float-engine-light")
    defer { try? FileManager.default.removeItem(at: directory) }
    try PythonReference.run(
      script: "scripts/reference/onnx_light_models.py", arguments: [directory.path] + Self.models)
    let cases = try JSONDecoder().decode(
      [OpCase].self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))
    #expect(cases.map(\.name) == Self.models)
    for c in cases {
      var graph = try ONNXLoader.load(
        contentsOf: directory.appendingPathComponent("\(c.name)/model.onnx"))
      let expectedOutputs = try OpCases.expected(directory, c)
      // Random weights saturate the final Softmax; the script also exposes its input, the
      // logits, as the last output: compare those.
      let logitsIndex = graph.outputs.count - 1
      graph.outputs = [graph.outputs[logitsIndex]]
      let expected = expectedOutputs[logitsIndex]
      let input = try #require(OpCases.inputs(directory, c).first?.floats)
      let batch = try #require(expected.shape.first)
      let engine = try FloatEngine(graph: graph, batchSize: batch, threads: 2, strict: true)
      var output = [Float](repeating: .nan, count: expected.floats.count)
      try input.withUnsafeBufferPointer { i in
        try output.withUnsafeMutableBufferPointer { try engine.run(input: i, output: $0) }
      }
      let range = (expected.floats.max() ?? 0) - (expected.floats.min() ?? 0)
      var worst: Float = 0
      for (a, e) in zip(output, expected.floats) {
        let d = abs(a - e)
        worst = d.isNaN ? .infinity : max(worst, d)
      }
      #expect(worst <= 1e-4 * range, "\(c.name): max |diff| \(worst) vs logit range \(range)")
      let classes = expected.floats.count / batch
      for image in 0..<batch {
        let slice = image * classes..<(image + 1) * classes
        func top5(_ v: [Float]) -> Set<Int> {
          Set(slice.sorted { v[$0] > v[$1] }.prefix(5))
        }
        #expect(top5(output) == top5(expected.floats), "\(c.name): top-5 of image \(image)")
      }
      for (node, implementation) in engine.implementations {
        #expect(
          !DNNLPrimitive.isReference(implementation), "\(c.name): \(node) runs \(implementation)")
      }
    }
  }

  @Test("a model with ops the engine cannot lower fails with every such node listed")
  func unsupportedNodesAreListed() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("float-engine-light")
    defer { try? FileManager.default.removeItem(at: directory) }
    try PythonReference.run(
      script: "scripts/reference/onnx_light_models.py", arguments: [directory.path, "shufflenet"])
    let graph = try ONNXLoader.load(
      contentsOf: directory.appendingPathComponent("shufflenet/model.onnx"))
    let error = #expect(throws: ModelError.self) {
      try FloatEngine(graph: graph, batchSize: 1)
    }
    #expect(error?.kind == .unsupportedOperators)
    #expect(error?.message.contains("(Transpose)") == true, "\(String(describing: error))")
  }
}
