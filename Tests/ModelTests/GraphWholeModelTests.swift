import Dataset
import Foundation
import TestSupport
import Testing

@testable import Model

/// Real architectures (ResNet-50, SqueezeNet, ShuffleNet, Inception-v2, from the onnx
/// package's "light" test models, with random weights) through every pass, against
/// onnxruntime.
@Suite(
  "Whole models against onnxruntime",
  .requiresPython)
struct GraphWholeModelTests {
  // Debug builds run the plain-Swift convolutions ~30x slower; keep them to the small nets.
  // `IMAGENET_EVAL_LIGHT_MODELS=resnet50,squeezenet` picks models by hand.
  static let models: [String] = {
    if let list = ProcessInfo.processInfo.environment["IMAGENET_EVAL_LIGHT_MODELS"] {
      return list.split(separator: ",").map(String.init)
    }
    #if DEBUG
      return ["squeezenet", "shufflenet"]
    #else
      return ["squeezenet", "shufflenet", "resnet50", "inception_v2"]
    #endif
  }()

  @Test func lightModelsMatchOnnxruntime() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("onnx-light")
    defer { try? FileManager.default.removeItem(at: directory) }
    try PythonReference.run(
      script: "scripts/reference/onnx_light_models.py", arguments: [directory.path] + Self.models)
    let manifest = try Data(contentsOf: directory.appendingPathComponent("manifest.json"))
    let cases = try JSONDecoder().decode([OpCase].self, from: manifest)
    #expect(cases.map(\.name) == Self.models)
    for c in cases {
      let graph = try ONNXLoader.load(
        contentsOf: directory.appendingPathComponent("\(c.name)/model.onnx"))
      let prepared = try GraphPasses.prepare(graph)
      let outputs = try ReferenceEvaluator.run(prepared, inputs: try OpCases.inputs(directory, c))
      let expected = try OpCases.expected(directory, c)
      #expect(outputs.count == expected.count)
      for (k, (a, e)) in zip(outputs, expected).enumerated() {
        #expect(a.shape == e.shape, "\(c.name) output \(k)")
        let (diff, tolerance) = OpCases.compare(a, e)
        #expect(diff <= tolerance, "\(c.name) output \(k): max diff \(diff) > \(tolerance)")
      }
      let ops = prepared.nodes.map(\.op.name)
      #expect(!ops.contains("BatchNormalization"), "\(c.name): every BN folds into its Conv")
      let sums = prepared.nodes.filter { $0.sumOperand != nil }.count
      if c.name == "resnet50" { #expect(sums == 16, "ResNet-50 has 16 residual Sums") }
      if c.name == "shufflenet" { #expect(sums == 13) }
      let plan = try MemoryPlan(prepared)
      let total = plan.sizes.values.reduce(0, +)
      #expect(plan.arenaSize < total / 4, "\(c.name): arena \(plan.arenaSize) vs \(total)")
    }
  }

  @Test func unsupportedOpsOfARealModelAreListed() throws {
    let root = try PythonReference.run(
      code: "import onnx, os; print(os.path.dirname(onnx.__file__))"
    )
    .trimmingCharacters(in: .whitespacesAndNewlines)
    let url = URL(fileURLWithPath: root).appendingPathComponent(
      "backend/test/data/light/light_inception_v1.onnx")
    do {
      _ = try ONNXLoader.load(contentsOf: url)
      Issue.record("expected the LRN nodes to be rejected")
    } catch let error as ModelError {
      #expect(error.kind == .unsupportedOperators)
      #expect(error.message.contains("2 unsupported operator(s)"))
      #expect(error.message.contains("LRN (domain ai.onnx)"))
    }
  }
}
