import Dataset
import Foundation
import TestSupport
import Testing

@testable import Model

/// The float engine on real architectures (the onnx package's "light" models with random
/// weights, prepared by the graph helper's scripts/reference/onnx_light_models.py) against
/// onnxruntime.
@Suite(
  "float engine on real architectures", .serialized,
  .requiresPython)
struct FloatEngineWholeModelTests {
  static let models: [String] = {
    #if DEBUG
      return ["squeezenet"]
    #else
      return ["squeezenet", "shufflenet", "resnet50", "inception_v2"]
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
    // 3D convolution and pooling (5D tensors) have no lowering.
    var graph = Graph(
      values: [], nodes: [], constants: [:], inputs: [], declaredInputShapes: [], outputs: [],
      opsetVersion: 13)
    let x = graph.addValue(Value(name: "x", elementType: .float32))
    let w = graph.addConstant(
      name: "w", Tensor(shape: [2, 2, 1, 1, 1], floats: [Float](repeating: 0.5, count: 4)))
    let c = graph.addValue(Value(name: "c", elementType: .float32))
    let p = graph.addValue(Value(name: "p", elementType: .float32))
    let y = graph.addValue(Value(name: "y", elementType: .float32))
    graph.nodes = [
      Node(
        name: "conv3d",
        op: .conv(
          Convolution(
            kernelShape: [1, 1, 1], strides: [1, 1, 1], pads: [0, 0, 0, 0, 0, 0],
            dilations: [1, 1, 1], group: 1)), inputs: [x, w], outputs: [c]),
      Node(
        name: "pool3d",
        op: .maxPool(
          Pooling(
            kernelShape: [2, 2, 2], strides: [2, 2, 2], pads: [0, 0, 0, 0, 0, 0],
            dilations: [1, 1, 1], ceilMode: false, countIncludePad: false)), inputs: [c],
        outputs: [p]),
      Node(name: "flatten", op: .flatten(axis: 1), inputs: [p], outputs: [y]),
    ]
    graph.inputs = [x]
    graph.declaredInputShapes = [[.symbolic("N"), .fixed(2), .fixed(4), .fixed(4), .fixed(4)]]
    graph.outputs = [y]
    let error = #expect(throws: ModelError.self) {
      try FloatEngine(graph: graph, batchSize: 1)
    }
    #expect(error?.kind == .unsupportedOperators)
    #expect(error?.message.contains("'conv3d' (Conv)") == true, "\(String(describing: error))")
    #expect(error?.message.contains("'pool3d' (MaxPool)") == true, "\(String(describing: error))")
  }
}
