import Foundation
import TestSupport
import Testing

@testable import Model

@Suite(
  "Int8 engine on small models",
  .requiresPython)
struct Int8EngineTests {
  @Test("resnetish: int8 logits track the float engine; fallbacks listed; report ranked")
  func resnetish() throws {
    let graph = try int8TestModel("resnetish")
    let batch = 4
    let calibration = try Int8Engine.calibrate(
      graph: graph, batchSize: batch, imageCount: 16, settings: Int8Settings(method: .max),
      nextBatch: seededBatches(3, images: batch, seed: 5))
    // 12 images came for 16 asked: used, and said so.
    #expect(calibration.imageCount == 12)
    #expect(calibration.warnings.contains { $0.tensor == nil && $0.message.contains("only 12") })
    #expect(calibration.thresholds["input"].map { $0 > 1.9 && $0 <= 2 } == true)

    let engine = try Int8Engine(graph: graph, batchSize: batch, calibration: calibration)
    #expect(engine.name == "int8")
    #expect(engine.quantizedNodes.count >= 5)
    #expect(engine.versionInfo["int8_kernels"] == expectedVectorKernels())
    #expect(engine.versionInfo["byte_lookup"] == nil)
    let floatEngine = try FloatEngine(graph: graph, batchSize: batch)
    let input = randomValues(batch * 3 * 32 * 32, seed: 777, in: -2...2)
    let expected = try runEngine(floatEngine, input)
    let actual = try runEngine(engine, input)
    let cosine = Int8Engine.cosineSimilarity(expected, actual)
    #expect(cosine > 0.98, "cosine \(cosine)")
    #expect(actual != expected)
    // Deterministic: a second run gives the same logits.
    #expect(try runEngine(engine, input) == actual)

    let report = try input.withUnsafeBufferPointer { try engine.layerReport(input: $0, images: 2) }
    #expect(report.layers.count == engine.quantizedNodes.count)
    #expect(zip(report.layers, report.layers.dropFirst()).allSatisfy { $0.sqnrDB <= $1.sqnrDB })
    #expect(report.layers.allSatisfy { $0.cosine > 0.9 && $0.sqnrDB > 10 })
    let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
    #expect(json.contains("\"sqnr_db\"") && json.contains("\"cosine\""))
  }

  @Test("every calibration method gives a working engine; default keeps the best cosine")
  func methods() throws {
    let graph = try int8TestModel("mobileish")
    let batch = 2
    for method in Int8Settings.Method.allCases {
      let calibration = try Int8Engine.calibrate(
        graph: graph, batchSize: batch, imageCount: 6, settings: Int8Settings(method: method),
        nextBatch: seededBatches(3, images: batch, seed: 5))
      #expect(calibration.imageCount == 6)
      if method == .default {
        #expect(calibration.candidateCosines.count == 3)
        let best = calibration.candidateCosines.values.max() ?? .nan
        #expect(calibration.candidateCosines[calibration.method.rawValue] == best)
      } else {
        #expect(calibration.method.rawValue == method.rawValue)
      }
      let engine = try Int8Engine(graph: graph, batchSize: batch, calibration: calibration)
      let input = randomValues(batch * 3 * 32 * 32, seed: 31, in: -2...2)
      let cosine = Int8Engine.cosineSimilarity(
        try runEngine(FloatEngine(graph: graph, batchSize: batch), input),
        try runEngine(engine, input))
      #expect(cosine > 0.95, "\(method): cosine \(cosine)")
    }
  }

  @Test("floatNodes: a named node runs in float; an unknown name is an error naming it")
  func floatNodes() throws {
    let graph = try int8TestModel("resnetish")
    let calibration = try Int8Engine.calibrate(
      graph: graph, batchSize: 2, imageCount: 4, settings: Int8Settings(method: .max),
      nextBatch: seededBatches(2, images: 2, seed: 5))
    let plain = try Int8Engine(graph: graph, batchSize: 2, calibration: calibration)
    guard
      let conv = plain.quantizedNodes.first(where: { name in
        graph.nodes.contains { $0.name == name && $0.op.name == "Conv" }
      })
    else {
      Issue.record("no quantised Conv")
      return
    }
    let overridden = try Int8Engine(
      graph: graph, batchSize: 2, calibration: calibration,
      settings: Int8Settings(method: .max, floatNodes: [conv]))
    #expect(overridden.floatFallbackNodes.contains(conv))
    #expect(!overridden.quantizedNodes.contains(conv))
    #expect(!plain.floatFallbackNodes.contains(conv))
    let input = randomValues(2 * 3 * 32 * 32, seed: 8, in: -2...2)
    let cosine = Int8Engine.cosineSimilarity(
      try runEngine(plain, input), try runEngine(overridden, input))
    #expect(cosine > 0.98)

    #expect {
      try Int8Engine(
        graph: graph, batchSize: 2, calibration: calibration,
        settings: Int8Settings(floatNodes: ["no_such_node"]))
    } throws: { "\($0)".contains("'no_such_node'") }
  }

  @Test("NaN in weights or activations: errors naming the tensor")
  func nonFinite() throws {
    var graph = try int8TestModel("resnetish")
    let calibration = try Int8Engine.calibrate(
      graph: graph, batchSize: 2, imageCount: 2, settings: Int8Settings(method: .max),
      nextBatch: seededBatches(1, images: 2, seed: 5))
    // A NaN input pixel: the calibration error names the input tensor.
    #expect {
      try Int8Engine.calibrate(
        graph: graph, batchSize: 2, imageCount: 2, settings: Int8Settings(method: .max)
      ) { buffer in
        buffer.initialize(repeating: 0.5)
        buffer[17] = .nan
        return 2
      }
    } throws: { "\($0)".contains("'input'") && "\($0)".contains("nan") }

    guard let conv = graph.nodes.first(where: { $0.op.name == "Conv" }),
      var weights = graph.constants[conv.inputs[1]]
    else {
      Issue.record("no Conv with constant weights")
      return
    }
    var values = weights.floatValues
    values[3] = .infinity
    weights.storage = .float32(values)
    graph.constants[conv.inputs[1]] = weights
    // Preparation may fold BatchNorm into the weights (renaming the tensor '<w>.folded_weight'):
    // the message names the tensor it saw and its node.
    #expect {
      try Int8Engine(graph: graph, batchSize: 2, calibration: calibration)
    } throws: {
      "\($0)".contains("weight tensor '") && "\($0)".contains("node '\(conv.name)'")
        && "\($0)".contains("inf")
    }
  }

  @Test("constant activations: calibration warns and the engine still runs")
  func constantInput() throws {
    let graph = try int8TestModel("resnetish")
    let calibration = try Int8Engine.calibrate(
      graph: graph, batchSize: 2, imageCount: 2, settings: Int8Settings(method: .kl)
    ) { buffer in
      buffer.initialize(repeating: 0)
      return 2
    }
    #expect(calibration.warnings.contains { $0.tensor == "input" && $0.message.contains("0") })
    let engine = try Int8Engine(graph: graph, batchSize: 2, calibration: calibration)
    let output = try runEngine(engine, [Float](repeating: 0, count: 2 * 3 * 32 * 32))
    let finite = output.allSatisfy { $0.isFinite }
    #expect(finite)
  }

  @Test("convolutions reading the same signed codes share one sign shift; same logits as unshared")
  func sharedSignShift() throws {
    // The same weights twice: in "branches_unshared" the second 1x1 branch reads the stem's
    // codes through an Identity (another value), so they are shifted a second time.
    let batch = 2
    func built(_ kind: String) throws -> Int8Engine {
      let graph = try int8TestModel(kind)
      let calibration = try Int8Engine.calibrate(
        graph: graph, batchSize: batch, imageCount: 4, settings: Int8Settings(method: .max),
        nextBatch: seededBatches(2, images: batch, seed: 9))
      return try Int8Engine(graph: graph, batchSize: batch, calibration: calibration, threads: 1)
    }
    let shared = try built("branches")
    let unshared = try built("branches_unshared")
    // oneDNN multiplies unsigned by signed bytes only with VNNI (or AMX); elsewhere the engine
    // keeps the signed source and shifts nothing.
    let flags =
      (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
      .split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
    if flags.contains("avx512_vnni") || flags.contains("amx_int8") {
      #expect(shared.versionInfo["sign_shift"] == "1 shift for 2 convolutions")
      #expect(unshared.versionInfo["sign_shift"] == "2 shifts for 2 convolutions")
    } else {
      #expect(shared.versionInfo["sign_shift"] == nil)
    }
    let input = randomValues(batch * 3 * 32 * 32, seed: 41, in: -2...2)
    let logits = try runEngine(shared, input)
    // Bit for bit: the shared shift feeds the second branch the same bytes its own would.
    #expect(logits == (try runEngine(unshared, input)))
    let floatLogits = try runEngine(
      try FloatEngine(graph: try int8TestModel("branches"), batchSize: batch), input)
    let cosine = Int8Engine.cosineSimilarity(floatLogits, logits)
    #expect(cosine > 0.98, "cosine \(cosine)")
  }
}

@Suite(
  "Int8 engine factory",
  .requiresPython)
struct Int8FactoryTests {
  @Test("make: calibrates and builds; a misspelt floatNodes entry fails before calibrating")
  func make() throws {
    let graph = try int8TestModel("resnetish")
    let engine = try Int8Engine.make(
      graph: graph, batchSize: 2, calibrationImages: 4, settings: Int8Settings(method: .mse),
      nextBatch: seededBatches(2, images: 2, seed: 5))
    #expect(engine.calibration.method == .mse)
    #expect(engine.calibration.imageCount == 4)
    var fed = 0
    #expect {
      try Int8Engine.make(
        graph: graph, batchSize: 2, calibrationImages: 4,
        settings: Int8Settings(floatNodes: ["Conv_typo"])
      ) { _ in
        fed += 1
        return 0
      }
    } throws: { "\($0)".contains("'Conv_typo'") }
    #expect(fed == 0)
  }
}

/// `versionInfo["int8_kernels"]` as the CPU flags in /proc/cpuinfo predict it (the engine's
/// own run-time checks where that file is absent).
private func expectedVectorKernels() -> String {
  let avx512: Bool
  let avx2: Bool
  if let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
    let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
  {
    let flags = Set(line.split(separator: " ").map(String.init))
    avx512 = flags.isSuperset(of: ["avx512bw", "avx512f", "avx512vl"])
    avx2 = flags.isSuperset(of: ["avx2", "fma"])
  } else {
    avx512 = Int8Passes.usesVectorLookup
    avx2 = Int8AddTableKernel.vectorized
  }
  switch (avx512, avx2) {
  case (true, true): return "avx512bw+avx2-fma"
  case (true, false): return "avx512bw"
  case (false, true): return "avx2-fma"
  case (false, false): return "scalar"
  }
}
