import Foundation
import SwiftProtobuf
import TestSupport
import Testing

@testable import Model

/// A small float model written by one of the reference scripts, loaded.
private func smallModel(script: String, _ arguments: [String]) throws -> Graph {
  let directory = try TestEnvironment.makeTemporaryDirectory("qdq-model")
  defer { try? FileManager.default.removeItem(at: directory) }
  let model = directory.appendingPathComponent("model.onnx")
  try PythonReference.run(
    script: script, arguments: [arguments[0], model.path] + arguments.dropFirst())
  return try ONNXLoader.load(contentsOf: model)
}

/// A 32×32, 10-class, width-16 model of `kind` (resnetish, mobileish, fasternet) written by
/// `dnnl_make_test_model.py`, loaded.
private func testModel(_ kind: String) throws -> Graph {
  try smallModel(
    script: "scripts/reference/dnnl_make_test_model.py",
    [kind, "--size", "32", "--classes", "10", "--width", "16"])
}

/// Calibrates `graph` on random images and builds the engine.
private func engine(
  _ graph: Graph, batch: Int = 4, settings: Int8Settings = Int8Settings(method: .max)
) throws -> Int8Engine {
  try Int8Engine.make(
    graph: graph, batchSize: batch, calibrationImages: 4 * batch, settings: settings,
    nextBatch: QDQHarness.randomFeeder(batches: 4, batchSize: batch))
}

/// The ONNX model our exporter wrote, parsed back.
private func exported(_ engine: Int8Engine) throws -> Onnx_ModelProto {
  try Onnx_ModelProto(serializedBytes: try engine.quantizedModel())
}

private func checkAgreement(_ c: QDQComparison) {
  print("QDQ export \(c)")
  #expect(c.withinFraction >= 0.99, "\(c)")
  #expect(c.top1Fraction >= 0.995, "\(c)")
}

@Suite(
  "QDQ export: onnxruntime runs the exported model as the int8 engine does",
  .requiresPython)
struct QDQExportTests {
  @Test(
    "small models: Conv/BN/ReLU, MaxPool, residual Add, AveragePool, Reshape, Gemm, Softmax, depthwise, HardSwish, Clip, ReduceMean, HardSigmoid, Mul, LeakyRelu, scale/shift, Sigmoid, MatMul, Split/Concat, GELU",
    arguments: ["resnetish", "mobileish", "fasternet"])
  func smallModels(kind: String) throws {
    let graph = try testModel(kind)
    let engine = try engine(graph)
    let images = randomValues(96 * 3 * 32 * 32, seed: 99, in: -2...2)
    let c = try QDQHarness.compare(engine, images: images, label: kind)
    checkAgreement(c)
    // The weights really are int8 codes behind DequantizeLinear; activations are Q/DQ pairs.
    #expect(c.count("QuantizeLinear") >= engine.quantizedNodes.count)
    let types = c.report["initializer_types"] as? [String: Int] ?? [:]
    let weighted = engine.nodeWeights.count
    #expect(weighted > 0 && (types["INT8"] ?? 0) >= weighted, "\(types)")
    #expect(c.report["opset"] as? Int == Int8Engine.qdqOpset)
  }

  @Test(
    "ops beyond the small models: Tanh, Transpose, Pad, Slice, Sub, Div, Concat of unequal scales, Gelu (tanh), Squeeze/Unsqueeze, opset-11 Softmax",
    arguments: ["tanh_transpose", "pad_slice_sub", "concat_scales", "gelu_tanh", "softmax11"])
  func opModels(kind: String) throws {
    let graph = try smallModel(script: "scripts/reference/qdq_op_models.py", [kind])
    let engine = try engine(graph)
    let images = randomValues(64 * 3 * 16 * 16, seed: 5, in: -2...2)
    let c = try QDQHarness.compare(engine, images: images, label: kind)
    checkAgreement(c)
  }

  @Test(
    "activations are written as uint8 (the engine's int8 codes + 128): onnxruntime runs every quantised Conv as QLinearConv and every residual Add as QLinearAdd"
  )
  func unsignedCodes() throws {
    let graph = try testModel("fasternet")
    let engine = try engine(graph)
    let model = try exported(engine)
    let initializers = Dictionary(
      model.graph.initializer.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let quantizers = Dictionary(
      model.graph.node.filter { $0.opType == "QuantizeLinear" }.map { ($0.name, $0) },
      uniquingKeysWith: { a, _ in a })
    var checked = 0
    for (id, p) in engine.params where p.type == .int8 && p.isPerTensor {
      guard let q = quantizers["\(engine.graph.values[id].name)_QuantizeLinear"] else { continue }
      let scale = try #require(initializers[q.input[1]])
      let zero = try #require(initializers[q.input[2]])
      #expect(zero.dataType == 2, "\(q.name)")  // UINT8
      #expect(zero.rawData.first.map(Int32.init) == p.zeroPoint + 128, "\(q.name)")
      #expect(scale.rawData.withUnsafeBytes { $0.loadUnaligned(as: Float.self) } == p.scale)
      checked += 1
    }
    #expect(checked >= 10)
    // No int8 activation codes are left for onnxruntime to convert.
    #expect(
      !model.graph.node.contains { n in
        n.opType == "QuantizeLinear" && initializers[n.input[2]]?.dataType == 3
      })
    let c = try QDQHarness.compare(
      engine, images: randomValues(48 * 3 * 32 * 32, seed: 8, in: -2...2),
      label: "fasternet, uint8 codes")
    checkAgreement(c)
    // Every quantised Conv is integer in onnxruntime's optimised graph (none left in float32,
    // plain or fused with the residual Add), and the residual Adds are QLinearAdd.
    let convs = engine.graph.nodes.filter {
      $0.op.name == "Conv" && engine.quantizedNodes.contains($0.name)
    }.count
    #expect(c.count("QLinearConv", optimized: true) == convs, "\(c)")
    #expect(c.count("Conv", optimized: true) == 0, "\(c)")
    #expect(c.count("FusedConv", optimized: true) == 0, "\(c)")
    #expect(c.count("QLinearAdd", optimized: true) >= 2, "\(c)")
  }

  @Test("the export, re-imported by the engine (QuantizedImport), runs and agrees")
  func reimported() throws {
    let graph = try testModel("fasternet")
    let original = try engine(graph)
    let imported = try Int8Engine(
      quantizedGraph: try ONNXLoader.load(data: try original.quantizedModel()),
      batchSize: original.batchSize)
    let images = randomValues(16 * 3 * 32 * 32, seed: 12, in: -2...2)
    let perImage = 3 * 32 * 32
    let classes = original.classCount
    var a = [Float](repeating: 0, count: original.batchSize * classes)
    var b = a
    var within = 0
    var exact = 0
    var total = 0
    for start in stride(from: 0, to: 16, by: original.batchSize) {
      let batch = Array(images[(start * perImage)..<((start + original.batchSize) * perImage)])
      try batch.withUnsafeBufferPointer { x in
        try a.withUnsafeMutableBufferPointer { try original.run(input: x, output: $0) }
        try b.withUnsafeMutableBufferPointer { try imported.run(input: x, output: $0) }
      }
      let lsb = original.params[original.graph.outputs[0]]?.scale ?? 1
      within += zip(a, b).filter { abs($0 - $1) <= 1.0001 * lsb }.count
      exact += zip(a, b).filter { $0 == $1 }.count
      total += a.count
    }
    print(
      "QDQ export re-imported: \(within) of \(total) logits within 1 LSB of the engine, \(exact) equal"
    )
    #expect(Double(within) >= 0.99 * Double(total))
    // Both compute what onnxruntime computes for the file (QLinearConv, QLinearAdd, Gelu).
    #expect(exact == total)
  }

  @Test("without onnxruntime's graph optimisations too (plain QDQ semantics)")
  func unoptimized() throws {
    let graph = try testModel("resnetish")
    let engine = try engine(graph)
    let c = try QDQHarness.compare(
      engine, images: randomValues(32 * 3 * 32 * 32, seed: 3, in: -2...2),
      label: "resnetish, optimisations off", optimization: "none")
    checkAgreement(c)
  }

  @Test(
    "float-fallback nodes keep float weights and no weight DequantizeLinear; results still agree")
  func floatNodes() throws {
    let graph = try testModel("resnetish")
    let plain = try engine(graph)
    guard
      let conv = plain.quantizedNodes.first(where: { name in
        plain.graph.nodes.contains { $0.name == name && $0.op.name == "Conv" }
      })
    else {
      Issue.record("no quantised Conv")
      return
    }
    let overridden = try engine(graph, settings: Int8Settings(method: .max, floatNodes: [conv]))
    #expect(overridden.floatFallbackNodes.contains(conv))
    let model = try exported(overridden)
    let initializers = Dictionary(
      model.graph.initializer.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let producers = Dictionary(
      model.graph.node.flatMap { n in n.output.map { ($0, n) } }, uniquingKeysWith: { a, _ in a })
    let node = try #require(model.graph.node.first { $0.name == conv })
    #expect(node.opType == "Conv")
    // Weight read straight from a float initializer.
    #expect(initializers[node.input[1]]?.dataType == 1)
    #expect(producers[node.input[1]] == nil)
    // Its input is still a dequantised activation: the engine holds codes between nodes.
    #expect(producers[node.input[0]]?.opType == "DequantizeLinear")
    // A quantised Conv reads int8 weights through a per-channel DequantizeLinear.
    let quantized = try #require(
      model.graph.node.first { $0.opType == "Conv" && overridden.quantizedNodes.contains($0.name) })
    let dq = try #require(producers[quantized.input[1]])
    #expect(dq.opType == "DequantizeLinear")
    #expect(initializers[dq.input[0]]?.dataType == 3)
    #expect(dq.attribute.first { $0.name == "axis" }?.i == 0)
    let bias = try #require(producers[quantized.input[2]])
    #expect(initializers[bias.input[0]]?.dataType == 6)

    let c = try QDQHarness.compare(
      overridden, images: randomValues(32 * 3 * 32 * 32, seed: 4, in: -2...2),
      label: "resnetish with \(conv) in float")
    checkAgreement(c)
    let plainGraph = try QDQHarness.compare(
      overridden, images: randomValues(32 * 3 * 32 * 32, seed: 4, in: -2...2),
      label: "resnetish with \(conv) in float, optimisations off", optimization: "none")
    print("QDQ export \(plainGraph)")
  }

  @Test("the exported weights are the engine's codes; bias scale is s_in * s_w; metadata recorded")
  func weightsAndMetadata() throws {
    let graph = try testModel("resnetish")
    let engine = try engine(graph)
    let model = try exported(engine)
    #expect(model.opsetImport.first?.version == Int64(Int8Engine.qdqOpset))
    let metadata = Dictionary(uniqueKeysWithValues: model.metadataProps.map { ($0.key, $0.value) })
    #expect(metadata["quantization.calibration_method"] == "max")
    #expect(metadata["quantization.calibration_images"] == "16")
    #expect(metadata["quantization.format"] == "QDQ")
    let initializers = Dictionary(
      model.graph.initializer.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let producers = Dictionary(
      model.graph.node.flatMap { n in n.output.map { ($0, n) } }, uniquingKeysWith: { a, _ in a })
    var checked = 0
    for (index, weights) in engine.nodeWeights {
      let node = engine.graph.nodes[index]
      guard case .conv = node.op,
        let onnxNode = model.graph.node.first(where: { $0.name == node.name }),
        let dq = producers[onnxNode.input[1]], let codes = initializers[dq.input[0]],
        let scales = initializers[dq.input[1]]
      else { continue }
      // OIHW codes in the file equal the engine's OHWI codes, transposed.
      let (o, kh, kw, i) = (weights.shape[0], weights.shape[1], weights.shape[2], weights.shape[3])
      #expect(codes.dims == [o, i, kh, kw].map(Int64.init))
      let file = [Int8](codes.rawData.map { Int8(bitPattern: $0) })
      var mismatches = 0
      for oc in 0..<o {
        for ic in 0..<i {
          for y in 0..<kh {
            for x in 0..<kw
            where file[((oc * i + ic) * kh + y) * kw + x]
              != weights.codes[((oc * kh + y) * kw + x) * i + ic]
            {
              mismatches += 1
            }
          }
        }
      }
      #expect(mismatches == 0, "\(node.name)")
      let fileScales = scales.rawData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
      #expect(fileScales == weights.params.scales)
      if let bias = weights.bias, onnxNode.input.count > 2,
        let biasDQ = producers[onnxNode.input[2]], let biasScale = initializers[biasDQ.input[1]]
      {
        let biasScales = biasScale.rawData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(biasScales == weights.params.scales.map { weights.inputScale * $0 })
        let biasCodes = initializers[biasDQ.input[0]].map {
          $0.rawData.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        }
        #expect(biasCodes == bias)
      }
      checked += 1
    }
    #expect(checked >= 4)
  }
}
