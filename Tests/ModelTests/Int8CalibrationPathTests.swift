import Foundation
import TestSupport
import Testing

@testable import Model

/// FasterNet-T0 (random weights, opset 13) from tools/make_fasternet.py, cached in .build.
private func fasterNetT0() throws -> Graph {
  let cache = TestEnvironment.packageRoot.appendingPathComponent(".build/fasternet-cache")
  let printed = try PythonReference.run(
    script: "tools/make_fasternet.py",
    arguments: ["--variant", "t0", "--opset", "13", "--cache-dir", cache.path])
  let path = try #require(printed.split(whereSeparator: \.isNewline).last.map(String.init))
  return try ONNXLoader.load(contentsOf: URL(fileURLWithPath: path))
}

private let lite0 = TestEnvironment.packageRoot.appendingPathComponent(
  "models/efficientnet-lite0.onnx")

@Suite(
  "Int8 calibration through the float engine",
  .requiresPython)
struct Int8CalibrationPathTests {
  /// Observes `graph` through FloatEngine and through the reference evaluator on the same
  /// images (batch 2; 3 images, so the last batch is partial) and compares the statistics.
  private func compareObservationPaths(_ graph: Graph, label: String) throws {
    let fast = try Int8Engine.observe(
      graph: graph, batchSize: 2, imageCount: 3, threads: nil, referenceEvaluator: false,
      nextBatch: seededBatches(2, images: 2, seed: 40, in: -2...2))
    let slow = try Int8Engine.observe(
      graph: graph, batchSize: 2, imageCount: 3, threads: nil, referenceEvaluator: true,
      nextBatch: seededBatches(2, images: 2, seed: 40, in: -2...2))
    #expect(fast.imageCount == 3 && slow.imageCount == 3)
    #expect(fast.observers.map(\.name) == slow.observers.map(\.name))
    // The float outputs kept for `default`.
    #expect(fast.reference.count == slow.reference.count)
    let logitError = zip(fast.reference, slow.reference).map { abs($0 - $1) }.max() ?? .nan
    let logitScale = slow.reference.map(abs).max() ?? 1
    #expect(logitError <= 1e-3 * max(logitScale, 1), "\(label): logits differ by \(logitError)")

    var worst: [CalibrationMethod: (String, Double)] = [:]
    var klGap = 0.0
    for (a, b) in zip(fast.observers, slow.observers) {
      #expect(a.elementCount == b.elementCount, "\(a.name): element counts")
      let scale = Double(max(b.maxMagnitude, 1e-6))
      #expect(
        abs(Double(a.minimum - b.minimum)) <= 1e-4 * scale
          && abs(Double(a.maximum - b.maximum)) <= 1e-4 * scale,
        "\(label) \(a.name): range [\(a.minimum), \(a.maximum)] vs [\(b.minimum), \(b.maximum)]")
      // Values within float tolerance can fall on the other side of a bin edge: the
      // histograms may differ by a few counts (measured: at most 0.3 % of the elements).
      let moved = zip(a.histogram, b.histogram).map { abs($0 - $1) }.reduce(0, +)
      #expect(
        Double(moved) <= 5e-3 * Double(b.elementCount) + 32,
        "\(label) \(a.name): \(moved) counts moved")
    }
    for method in CalibrationMethod.allCases {
      let x = try fast.session.thresholds(method).thresholds
      let y = try slow.session.thresholds(method).thresholds
      for observer in slow.observers {
        let name = observer.name
        guard let t = x[name], let u = y[name] else {
          Issue.record("\(label) \(name): no \(method) threshold")
          continue
        }
        let bins = abs(Double(t - u)) / max(observer.binWidth, 1e-12)
        if bins > (worst[method]?.1 ?? -1) { worst[method] = (name, bins) }
        if method == .kl {
          // KL's divergence curve can be flat far from its minimum: a few counts moved by
          // float noise may move the argmin a long way between near-equal candidates. The
          // fast path's choice must be as good on the reference histogram, within 1 %
          // (measured: 0.16 % on FasterNet-T0, 0 on Lite0).
          let d = try CalibrationAlgorithms.klDivergences(observer.histogram)
          let mine = Int((Double(t) / observer.binWidth).rounded()) - 128
          let theirs = Int((Double(u) / observer.binWidth).rounded()) - 128
          guard d.indices.contains(mine), d.indices.contains(theirs) else {
            Issue.record("\(label) \(name): KL index out of range")
            continue
          }
          let gap = d[mine] - d[theirs]
          klGap = max(klGap, gap / max(d[theirs], 1e-12))
          #expect(
            gap <= 1e-2 * d[theirs] + 1e-9,
            "\(label) \(name) kl: \(t) (KL \(d[mine])) vs reference path \(u) (KL \(d[theirs]))")
        } else {
          // A threshold is a bin edge; float noise may move it by a bin at most.
          #expect(
            abs(Double(t - u)) <= observer.binWidth * 1.001 + 1e-6 * Double(abs(u)),
            "\(label) \(name) \(method): \(t) vs reference path \(u)")
        }
      }
    }
    print(
      "\(label): fast vs reference observation, largest threshold difference in bins: "
        + worst.sorted { $0.key.rawValue < $1.key.rawValue }.map {
          "\($0.key.rawValue) \($0.value.1) (\($0.value.0))"
        }.joined(separator: ", ") + "; largest relative KL excess \(klGap)")
  }

  @Test("FasterNet-T0: FloatEngine observation equals the reference evaluator's")
  func fasterNetPathsAgree() throws {
    try compareObservationPaths(try fasterNetT0(), label: "FasterNet-T0")
  }

  @Test(
    "EfficientNet-Lite0: FloatEngine observation equals the reference evaluator's",
    .enabled(
      if: FileManager.default.fileExists(atPath: lite0.path),
      "needs models/efficientnet-lite0.onnx (run scripts/setup-assets.sh)"))
  func lite0PathsAgree() throws {
    try compareObservationPaths(try ONNXLoader.load(contentsOf: lite0), label: "Lite0")
  }

  @Test("the layer report through FloatEngine matches one computed by hand on the reference path")
  func layerReportMatchesReference() throws {
    let graph = try int8TestModel("resnetish")
    let calibration = try Int8Engine.calibrate(
      graph: graph, batchSize: 2, imageCount: 4, settings: Int8Settings(method: .max),
      nextBatch: seededBatches(2, images: 2, seed: 3, in: -2...2))
    let engine = try Int8Engine(graph: graph, batchSize: 2, calibration: calibration)
    let input = randomValues(2 * 3 * 32 * 32, seed: 91, in: -2...2)
    let report = try input.withUnsafeBufferPointer { try engine.layerReport(input: $0, images: 1) }
    #expect(report.layers.count == engine.quantizedNodes.count)

    // Independent: the reference evaluator's activations (NCHW) against the int8 codes
    // dequantised by Int8Layout (which permutes back to NCHW).
    var reference: [String: [Float]] = [:]
    _ = try Int8Engine.referenceActivations(
      engine.graph, input: Tensor(shape: engine.inputShape, floats: input)
    ) { id, tensor in
      reference[engine.graph.values[id].name] = tensor.floats
    }
    var logits = [Float](repeating: 0, count: 2 * engine.classCount)
    var expected: [String: Double] = [:]
    try input.withUnsafeBufferPointer { x in
      try logits.withUnsafeMutableBufferPointer { y in
        try engine.run(input: x, output: y) { index, codes in
          guard engine.nodeIsQuantized[index] else { return }
          let value = engine.graph.nodes[index].outputs[0]
          let name = engine.graph.values[value].name
          guard let floats = reference[name] else { return }
          let shape = try engine.graph.shape(of: value)
          var mine = [Float](repeating: 0, count: floats.count)
          if value == engine.graph.outputs[0], engine.logitsAreFloat {
            for i in mine.indices { mine[i] = codes.assumingMemoryBound(to: Float.self)[i] }
          } else {
            let p = try #require(engine.params[value])
            try mine.withUnsafeMutableBufferPointer {
              try Int8Layout.dequantize(codes, shape: shape, params: p, into: $0)
            }
          }
          let half = floats.count / 2
          var signal = 0.0
          var noise = 0.0
          for i in 0..<half {
            signal += Double(floats[i]) * Double(floats[i])
            noise += Double(floats[i] - mine[i]) * Double(floats[i] - mine[i])
          }
          expected[engine.graph.nodes[index].name] = 10 * log10(signal / noise)
        }
      }
    }
    for layer in report.layers {
      let sqnr = try #require(expected[layer.node], "\(layer.node)")
      #expect(abs(layer.sqnrDB - sqnr) < 0.05, "\(layer.node): \(layer.sqnrDB) vs \(sqnr) dB")
    }
  }

  // MARK: int16 overrides

  /// The SQNR (dB) of node `name`'s output codes in `engine` against the node evaluated in
  /// float (reference evaluator, float weights) on the engine's own dequantised input: the
  /// error this node adds, whatever came before.
  private func nodeSQNR(_ engine: Int8Engine, node name: String, input: [Float]) throws -> Double {
    let index = try #require(engine.graph.nodes.firstIndex { $0.name == name })
    let node = engine.graph.nodes[index]
    let value = node.outputs[0]
    var signal = 0.0
    var noise = 0.0
    var logits = [Float](repeating: 0, count: engine.batchSize * engine.classCount)
    func floats(_ id: ValueID, _ codes: UnsafeRawPointer) throws -> Tensor {
      let shape = try engine.graph.shape(of: id)
      let p = try #require(engine.params[id])
      var values = [Float](repeating: 0, count: shape.reduce(1, *))
      try values.withUnsafeMutableBufferPointer {
        try Int8Layout.dequantize(codes, shape: shape, params: p, into: $0)
      }
      return Tensor(shape: shape, floats: values)
    }
    try input.withUnsafeBufferPointer { x in
      try logits.withUnsafeMutableBufferPointer { y in
        try engine.run(input: x, output: y) { i, codes in
          guard i == index else { return }
          // A Conv without a fused sum never writes over its input, which is still intact.
          let inputs = try node.inputs.map { id -> Tensor in
            if let constant = engine.graph.constants[id] { return constant }
            return try floats(id, UnsafeRawPointer(try engine.codes(of: id)))
          }
          let expected = try #require(try ReferenceEvaluator.evaluate(node, inputs).first?.floats)
          let mine = try #require(try floats(value, codes).floats)
          for (a, b) in zip(expected, mine) {
            signal += Double(a) * Double(a)
            noise += Double(a - b) * Double(a - b)
          }
        }
      }
    }
    return 10 * log10(signal / noise)
  }

  @Test("int16Nodes: the node's output is int16 (scale T/32767) and closer to float than int8")
  func int16Override() throws {
    let graph = try int8TestModel("resnetish")
    // Calibrated (max) on the very images compared, so no value is clipped and the error is
    // the rounding alone.
    let input = randomValues(2 * 3 * 32 * 32, seed: 123, in: -2...2)
    let calibration = try Int8Engine.calibrate(
      graph: graph, batchSize: 2, imageCount: 2, settings: Int8Settings(method: .max)
    ) { buffer in
      _ = buffer.update(fromContentsOf: input)
      return 2
    }
    let plain = try Int8Engine(graph: graph, batchSize: 2, calibration: calibration)
    // A quantised Conv without a fused residual whose output feeds another node.
    let conv = try #require(
      plain.graph.nodes.first { node in
        node.op.name == "Conv" && plain.quantizedNodes.contains(node.name)
          && node.outputs[0] != plain.graph.outputs[0] && node.sumOperand == nil
      })
    let wide = try Int8Engine(
      graph: graph, batchSize: 2, calibration: calibration,
      settings: Int8Settings(method: .max, int16Nodes: [conv.name]))
    #expect(wide.int16Nodes == [conv.name])
    #expect(plain.int16Nodes.isEmpty)
    let value = conv.outputs[0]
    let threshold = try #require(calibration.thresholds[wide.graph.values[value].name])
    #expect(wide.params[value] == (try QuantParams(type: .int16, scale: threshold / 32767)))
    // The Conv itself runs the integer kernel with int16 output codes; consumers other than
    // Convs read int16 codes in float.
    #expect(wide.quantizedNodes.contains(conv.name))
    for consumer in wide.graph.nodes where consumer.inputs.contains(value) {
      if consumer.op.name == "Conv" {
        #expect(wide.quantizedNodes.contains(consumer.name), "\(consumer.name)")
      } else {
        #expect(wide.floatFallbackNodes.contains(consumer.name), "\(consumer.name)")
      }
    }

    let float = try FloatEngine(graph: graph, batchSize: 2)
    let int8SQNR = try nodeSQNR(plain, node: conv.name, input: input)
    let int16SQNR = try nodeSQNR(wide, node: conv.name, input: input)
    print("node \(conv.name): SQNR int8 \(int8SQNR) dB, int16 \(int16SQNR) dB")
    // Both carry the int8 weights' error; int16 drops the 8-bit output rounding (measured:
    // 35.6 dB int8, 46.1 dB int16).
    #expect(int16SQNR > int8SQNR + 6, "int16 \(int16SQNR) dB vs int8 \(int8SQNR) dB")
    // The whole model still tracks the float engine.
    var a = [Float](repeating: 0, count: 2 * float.classCount)
    var b = a
    try input.withUnsafeBufferPointer { x in
      try a.withUnsafeMutableBufferPointer { try float.run(input: x, output: $0) }
      try b.withUnsafeMutableBufferPointer { try wide.run(input: x, output: $0) }
    }
    #expect(Int8Engine.cosineSimilarity(a, b) > 0.98)

    #expect {
      try Int8Engine(
        graph: graph, batchSize: 2, calibration: calibration,
        settings: Int8Settings(int16Nodes: ["no_such_node"]))
    } throws: { "\($0)".contains("'no_such_node'") && "\($0)".contains("int16Nodes") }
  }

  @Test("int16 codes round-trip through the engine layout, saturating at the int16 range")
  func int16Codes() throws {
    let p = try QuantParams.symmetric(threshold: 3.2767, type: .int16)
    #expect(p.scale == Float(3.2767) / 32767 && p.type == .int16)
    let shape = [1, 3, 2, 2]
    // Values on the grid (codes known by hand), plus two beyond the range.
    let codes: [Int16] = [0, 1, -1, 32767, -32767, 100, -100, 12345, 2, -2, 7, 9]
    var values = codes.map { Float($0) * p.scale }
    values[10] = 10  // saturates to 32767
    values[11] = -10  // saturates to -32768
    var stored = [Int16](repeating: 0, count: values.count)
    try values.withUnsafeBufferPointer { v in
      try stored.withUnsafeMutableBytes {
        try Int8Layout.quantize(v, shape: shape, params: p, into: $0.baseAddress!)
      }
    }
    // Channels-last: NCHW element (c, y, x) lives at (y·2 + x)·3 + c.
    for c in 0..<3 {
      for pixel in 0..<4 {
        let expected: Int16 =
          c * 4 + pixel == 10 ? 32767 : (c * 4 + pixel == 11 ? -32768 : codes[c * 4 + pixel])
        #expect(stored[pixel * 3 + c] == expected, "channel \(c) pixel \(pixel)")
      }
    }
    var back = [Float](repeating: .nan, count: values.count)
    try stored.withUnsafeBytes { raw in
      try back.withUnsafeMutableBufferPointer {
        try Int8Layout.dequantize(raw.baseAddress!, shape: shape, params: p, into: $0)
      }
    }
    for i in 0..<10 { #expect(back[i] == values[i], "element \(i)") }
    #expect(back[10] == 32767 * p.scale && back[11] == -32768 * p.scale)
  }
}
