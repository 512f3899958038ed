import Dataset
import Foundation
import TestSupport
import Testing

@testable import Model

/// One case written by `scripts/reference/onnx_ops.py`.
struct OpCase: Decodable {
  let name: String
  let inputs: Int
  let outputs: Int
  let ops: [String]?
}

/// Generates the onnxruntime reference cases once per test process.
enum OpCases {
  static let generated: Result<(URL, [OpCase]), Error> = Result {
    let directory = try TestEnvironment.makeTemporaryDirectory("onnx-ops")
    try PythonReference.run(script: "scripts/reference/onnx_ops.py", arguments: [directory.path])
    let manifest = try Data(contentsOf: directory.appendingPathComponent("manifest.json"))
    return (directory, try JSONDecoder().decode([OpCase].self, from: manifest))
  }

  /// A case's model, its inputs and onnxruntime's outputs.
  static func load(_ directory: URL, _ c: OpCase) throws -> (
    graph: Graph, inputs: [Tensor], expected: [NumpyArray]
  ) {
    let graph = try ONNXLoader.load(
      contentsOf: directory.appendingPathComponent("\(c.name)/model.onnx"))
    return (graph, try inputs(directory, c), try expected(directory, c))
  }

  static func inputs(_ directory: URL, _ c: OpCase) throws -> [Tensor] {
    try (0..<c.inputs).map { i in
      let npy = try NumpyFile.read(directory.appendingPathComponent("\(c.name)/input_\(i).npy"))
      if npy.dtype == .int64 {
        return Tensor(shape: npy.shape, int64s: try npy.values(as: Int64.self))
      }
      return Tensor(shape: npy.shape, floats: npy.floatValues())
    }
  }

  static func expected(_ directory: URL, _ c: OpCase) throws -> [NumpyArray] {
    try (0..<c.outputs).map { i in
      try NumpyFile.read(directory.appendingPathComponent("\(c.name)/output_\(i).npy"))
    }
  }

  /// Maximum absolute difference and the tolerance 1e-4 × range of the expected values.
  static func compare(_ actual: Tensor, _ expected: NumpyArray) -> (Float, Float) {
    let values = actual.floatValues
    let reference = expected.floatValues()
    let range = (reference.max() ?? 0) - (reference.min() ?? 0)
    var worst: Float = 0
    for (a, e) in zip(values, reference) { worst = max(worst, abs(a - e)) }
    if values.contains(where: \.isNaN) { worst = .infinity }
    return (worst, 1e-4 * max(range, 1e-3))
  }
}

@Suite("Ops against onnxruntime")
struct OpConformanceTests {
  /// Runs every generated case through `prepare` (folding, fusions, shape inference) and the
  /// reference evaluator, and also through shape inference alone (no fusions), comparing both
  /// with onnxruntime on the unfused model.
  @Test(
    .requiresPython)
  func everyCaseMatchesOnnxruntime() throws {
    let (directory, cases) = try OpCases.generated.get()
    #expect(cases.count > 80)
    for c in cases {
      do {
        let (graph, inputs, expected) = try OpCases.load(directory, c)
        let batch = inputs[0].shape.first
        let prepared = try GraphPasses.prepare(graph, batchSize: batch)
        let unfused = try GraphPasses.inferShapes(graph, batchSize: batch)
        for (label, g) in [("prepared", prepared), ("unfused", unfused)] {
          let outputs = try ReferenceEvaluator.run(g, inputs: inputs)
          #expect(outputs.count == expected.count, "\(c.name)")
          for (k, (a, e)) in zip(outputs, expected).enumerated() {
            #expect(a.shape == e.shape, "\(c.name) [\(label)] output \(k) shape")
            #expect(g.values[g.outputs[k]].shape == e.shape, "\(c.name) [\(label)] inferred shape")
            let (diff, tolerance) = OpCases.compare(a, e)
            #expect(
              diff <= tolerance, "\(c.name) [\(label)] output \(k): max diff \(diff) > \(tolerance)"
            )
          }
        }
        if let ops = c.ops {
          #expect(prepared.nodes.map(\.op.name) == ops, "\(c.name): ops after passes")
        }
      } catch {
        Issue.record("\(c.name): \(error)")
      }
    }
  }
}

extension OpConformanceTests {
  /// Runs every generated case through `FloatEngine` in strict mode (no oneDNN reference
  /// kernels): each output on its own (the engine returns one), with inputs after the first
  /// bound as constants (the engine takes one input).
  @Test(
    .requiresPython)
  func everyCaseMatchesOnnxruntimeOnTheFloatEngine() throws {
    let (directory, cases) = try OpCases.generated.get()
    var checked = 0
    for c in cases {
      do {
        let (graph, inputs, expected) = try OpCases.load(directory, c)
        var bound = graph
        for (id, tensor) in zip(graph.inputs, inputs).dropFirst() {
          bound.constants[id] = tensor
          bound.values[id].shape = tensor.shape
        }
        bound.inputs = [graph.inputs[0]]
        bound.declaredInputShapes = [inputs[0].shape.map { .fixed($0) }]
        for (k, e) in expected.enumerated() {
          var single = bound
          single.outputs = [graph.outputs[k]]
          let engine = try FloatEngine(
            graph: single, batchSize: inputs[0].shape.first ?? 1, threads: 2, strict: true,
            requiresClassifierOutput: false)
          var output = [Float](repeating: .nan, count: engine.outputElementCount)
          let input = inputs[0].floatValues
          try input.withUnsafeBufferPointer { i in
            try output.withUnsafeMutableBufferPointer { try engine.run(input: i, output: $0) }
          }
          #expect(output.count == e.shape.reduce(1, *), "\(c.name) output \(k) size")
          let (diff, tolerance) = OpCases.compare(Tensor(shape: e.shape, floats: output), e)
          #expect(
            diff <= tolerance,
            "\(c.name) [float engine] output \(k): max diff \(diff) > \(tolerance)")
          for (node, implementation) in engine.implementations {
            #expect(
              !DNNLPrimitive.isReference(implementation),
              "\(c.name): \(node) runs \(implementation)")
          }
          checked += 1
        }
      } catch {
        Issue.record("\(c.name) [float engine]: \(error)")
      }
    }
    #expect(checked > 90)
  }
}

extension NumpyArray {
  /// The elements as floats, under the name the model tests use for tensors too.
  var floats: [Float] { floatValues() }
}
