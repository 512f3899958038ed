import Foundation
import TestSupport
import Testing

@testable import Model

/// The float engine's and onnxruntime's outputs for one model and input.
private struct EngineComparison {
  var engine: [Float]
  var reference: [Float]
  var implementations: [(node: String, implementation: String)]
  var partialConvolutions: Int
  var partialConvolutionProvenance: String?
  var pointwiseProvenance: String?
}

/// Generates a model with scripts/reference/dnnl_make_test_model.py, runs it in onnxruntime
/// and in the float engine on the same seeded input, and returns both outputs.
private func compareWithOnnxRuntime(
  kind: String, batch: Int, size: Int = 64, classes: Int = 100, width: Int = 40,
  shards: Int? = nil
) throws -> EngineComparison {
  let directory = try TestEnvironment.makeTemporaryDirectory("float-engine")
  defer { try? FileManager.default.removeItem(at: directory) }
  let model = directory.appendingPathComponent("\(kind).onnx")
  try PythonReference.run(
    script: "scripts/reference/dnnl_make_test_model.py",
    arguments: [
      kind, model.path, "--size", "\(size)", "--classes", "\(classes)", "--width", "\(width)",
    ])
  let inputShape = [batch, 3, size, size]
  let input = randomValues(inputShape.reduce(1, *), seed: 99, in: -2...2)
  let inputURL = directory.appendingPathComponent("input.f32")
  let outputURL = directory.appendingPathComponent("output.f32")
  try input.withUnsafeBufferPointer { try Data(buffer: $0).write(to: inputURL) }
  let printed = try PythonReference.run(
    script: "scripts/reference/dnnl_run_onnx.py",
    arguments: [
      model.path, inputURL.path, inputShape.map(String.init).joined(separator: ","), outputURL.path,
    ])
  #expect(try JSONDecoder().decode([Int].self, from: Data(printed.utf8)) == [batch, classes])
  let reference = try Data(contentsOf: outputURL).withUnsafeBytes {
    Array($0.bindMemory(to: Float.self))
  }

  let graph = try ONNXLoader.load(contentsOf: model)
  let engine = try FloatEngine(
    graph: graph, batchSize: batch, threads: 2, strict: true, requiresClassifierOutput: true,
    shards: shards)
  #expect(engine.inputShape == inputShape)
  #expect(engine.classCount == classes)
  var output = [Float](repeating: .nan, count: batch * classes)
  try input.withUnsafeBufferPointer { inputBuffer in
    try output.withUnsafeMutableBufferPointer { try engine.run(input: inputBuffer, output: $0) }
  }
  // A second run over the same buffers must give the same answer (no state leaks between runs).
  var again = [Float](repeating: .nan, count: batch * classes)
  try input.withUnsafeBufferPointer { inputBuffer in
    try again.withUnsafeMutableBufferPointer { try engine.run(input: inputBuffer, output: $0) }
  }
  #expect(again == output)
  return EngineComparison(
    engine: output, reference: reference, implementations: engine.implementations,
    partialConvolutions: engine.partialConvolutionCount,
    partialConvolutionProvenance: engine.versionInfo["partial_conv"],
    pointwiseProvenance: engine.versionInfo["conv1x1_kernel"])
}

/// Whether /proc/cpuinfo lists AVX-512 F (independently of the kernels' own CPUID check).
private func hasAVX512F() -> Bool {
  let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
  let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
  return flags.split(separator: " ").contains("avx512f")
}

private func topFive(_ logits: ArraySlice<Float>) -> Set<Int> {
  Set(logits.indices.sorted { logits[$0] > logits[$1] }.prefix(5).map { $0 - logits.startIndex })
}

private func expectMatchesReference(
  _ result: EngineComparison,
  batch: Int, classes: Int, _ label: String, sourceLocation: SourceLocation = #_sourceLocation
) {
  #expect(result.engine.count == result.reference.count, sourceLocation: sourceLocation)
  guard result.engine.count == result.reference.count else { return }
  let range = (result.reference.max() ?? 0) - (result.reference.min() ?? 0)
  var worst: Float = 0
  for (a, b) in zip(result.engine, result.reference) {
    let d = abs(a - b)
    worst = d.isNaN ? .infinity : max(worst, d)
  }
  print(
    "\(label): max |diff| \(worst), logit range \(range), \(result.implementations.count) primitives"
  )
  #expect(
    worst <= 1e-4 * range, "\(label): max |diff| \(worst) vs logit range \(range)",
    sourceLocation: sourceLocation)
  for image in 0..<batch {
    let slice = image * classes..<(image + 1) * classes
    #expect(
      topFive(result.engine[slice]) == topFive(result.reference[slice]),
      "\(label): top-5 of image \(image) differs", sourceLocation: sourceLocation)
  }
  for (node, implementation) in result.implementations {
    #expect(!DNNLPrimitive.isReference(implementation), "\(label): \(node) runs \(implementation)")
  }
}

@Suite(
  "float engine against onnxruntime", .serialized,
  .requiresPython)
struct FloatEngineTests {
  @Test(
    "FasterNet-like graph (partial conv, fused BN/GELU/residual), batch 1 and 3", arguments: [1, 3])
  func fasterNetLike(batch: Int) throws {
    let result = try compareWithOnnxRuntime(kind: "fasternet", batch: batch)
    expectMatchesReference(result, batch: batch, classes: 100, "fasternet batch \(batch)")
    // All four Split→Conv→Concat blocks take the dense-slice path.
    #expect(result.partialConvolutions == 4)
    // The AVX-512 1x1 kernel takes, on two threads (batch 1), every 1x1 convolution with a
    // multiple of 16 outputs: 8 of 9 (not stage 1's projection to 40 channels); stage 2 (64
    // pixels) split by pixels, stage 3 (16) and the head by output blocks. In a one-thread
    // shard (batch 3's first: 1 + 2 images, whose plan `implementations` lists) the stage-3
    // pair (ReLU, then the residual sum) and the head, whose weights outweigh their pixels.
    let pointwise = result.implementations.filter { $0.implementation == "c:conv1x1-avx512" }
    let expected = PointwiseConvolutionKernel.isEnabled ? (batch == 1 ? 8 : 3) : 0
    #expect(pointwise.count == expected, "\(pointwise)")
    #expect(
      result.pointwiseProvenance == (expected == 0 ? "none" : "\(expected) (c:conv1x1-avx512)"))
  }

  @Test(
    "partial convolutions at odd sizes: 3x3 ones over 16k channels by Winograd; other 3x3 ones by the AVX-512 kernel on two threads, in place or not; the rest, and one-thread shards, by oneDNN's direct convolution",
    arguments: [(1, nil), (3, 1), (3, nil)] as [(Int, Int?)])
  func partialConvolutions(batch: Int, shards: Int?) throws {
    let result = try compareWithOnnxRuntime(kind: "pconv", batch: batch, size: 38, shards: shards)
    let label = "pconv batch \(batch), shards \(shards.map(String.init) ?? "one per thread")"
    expectMatchesReference(result, batch: batch, classes: 100, label)
    #expect(result.partialConvolutions == 6)
    #expect(
      PartialConvolutionKernel.isEnabled
        == (hasAVX512F()
          && ProcessInfo.processInfo.environment["IMAGENET_EVAL_PCONV_ONEDNN"] != "1"))
    // Batch 3 with a shard per thread: one-thread plans, which keep oneDNN's convolution.
    let kernel = PartialConvolutionKernel.isEnabled && (batch == 1 || shards == 1)
    // oneDNN 2.6 has Winograd for AVX-512 only.
    let winograd =
      hasAVX512F() && ProcessInfo.processInfo.environment["IMAGENET_EVAL_WINOGRAD"] != "0"
    let implementations = result.implementations.map(\.implementation)
    // Three 3x3 ones by the kernel (over 9, 9 and 70 channels; two in place and restored),
    // one by Winograd (32 channels, in place).
    #expect(implementations.filter { $0 == "c:conv3x3-avx512" }.count == (kernel ? 3 : 0))
    #expect(implementations.filter { $0 == "c:slice-restore-avx512" }.count == (kernel ? 2 : 0))
    #expect(implementations.filter { $0.contains("wino") }.count == (winograd ? 1 : 0))
    let provenance = try #require(result.partialConvolutionProvenance)
    // e.g. "3 c:conv3x3-avx512, 1 brgconv:avx512_core, 1 jit_fp32_wino_2x3:avx512_core, …"
    let counts = provenance.split(separator: ", ").map {
      (count: Int($0.prefix { $0.isNumber }) ?? 0, implementation: $0.drop { $0 != " " })
    }
    #expect(counts.map(\.count).reduce(0, +) == 6, "\(provenance)")
    #expect(
      counts.contains { $0.count == 3 && $0.implementation == " c:conv3x3-avx512" } == kernel,
      "\(provenance)")
    #expect(
      counts.contains { $0.count == 1 && $0.implementation.contains("wino") } == winograd,
      "\(provenance)")
  }

  @Test("ResNet-like graph (ceil-mode max pool, residual Add+ReLU, 4D reshape, softmax)")
  func resNetLike() throws {
    let result = try compareWithOnnxRuntime(kind: "resnetish", batch: 2, size: 61)
    expectMatchesReference(result, batch: 2, classes: 100, "resnetish")
  }

  @Test("MobileNet-like graph (depthwise, hardswish, SE broadcast Mul, BN, MatMul+Add)")
  func mobileNetLike() throws {
    let result = try compareWithOnnxRuntime(kind: "mobileish", batch: 2)
    expectMatchesReference(result, batch: 2, classes: 100, "mobileish")
  }

  @Test("wrong buffer sizes are an error, not a crash")
  func wrongBufferSizes() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("float-engine")
    defer { try? FileManager.default.removeItem(at: directory) }
    let model = directory.appendingPathComponent("m.onnx")
    try PythonReference.run(
      script: "scripts/reference/dnnl_make_test_model.py",
      arguments: ["mobileish", model.path, "--size", "16"])
    let engine = try FloatEngine(graph: ONNXLoader.load(contentsOf: model), batchSize: 2)
    let input = [Float](repeating: 0, count: 5)
    var output = [Float](repeating: 0, count: 200)
    #expect(throws: ModelError.self) {
      try input.withUnsafeBufferPointer { i in
        try output.withUnsafeMutableBufferPointer { try engine.run(input: i, output: $0) }
      }
    }
    #expect(engine.versionInfo["onednn"] != nil)
  }

  @Test("a Gelu node: values as libm's erf gives them; versionInfo names what computed them")
  func standaloneGelu() throws {
    let shape = [2, 8, 5, 5]
    let count = shape.reduce(1, *)
    let graph = singleNodeGraph(
      .activation(.gelu(tanhApproximation: false)), input: shape)
    let engine = try FloatEngine(
      graph: graph, batchSize: 2, threads: 2, strict: true, requiresClassifierOutput: false)
    let input = (0..<count).map { Float($0 % 97) / 8 - 6 }
    var output = [Float](repeating: .nan, count: count)
    try input.withUnsafeBufferPointer { i in
      try output.withUnsafeMutableBufferPointer { try engine.run(input: i, output: $0) }
    }
    for (x, y) in zip(input, output) {
      let exact = Double(x) * (1 + Foundation.erf(Double(x) / 2.0.squareRoot())) / 2
      #expect(abs(Double(y) - exact) <= 1e-6, "GELU(\(x)) = \(y), exact \(exact)")
    }
    let usesKernel =
      hasAVX512F() && ProcessInfo.processInfo.environment["IMAGENET_EVAL_GELU_POSTOP"] != "1"
    #expect(engine.versionInfo["gelu"] == (usesKernel ? "avx512 kernel" : "oneDNN gelu_erf"))
    #expect(engine.versionInfo["partial_conv"] == "none")
    #expect(engine.versionInfo["conv1x1_kernel"] == "none")
    #expect(
      engine.implementations.contains { $0.implementation == "c:gelu-avx512" } == usesKernel)
  }
}
