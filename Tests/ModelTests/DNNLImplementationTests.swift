import Testing

@testable import Model

/// oneDNN silently falls back to scalar "ref" kernels (hundreds of times slower) for layouts
/// its JIT kernels do not cover; these tests pin the layouts the engines use to fast kernels.
@Suite("oneDNN kernel selection")
struct DNNLImplementationTests {
  /// Builds the representative primitives of a FasterNet-like network at `batch`, in strict
  /// mode, and returns their implementation names.
  func representativePrimitives(batch: Int) throws -> [(String, String)] {
    let engine = try DNNLEngine(threads: 2, strict: true)
    func nhwc(_ c: Int, _ h: Int, _ w: Int) throws -> DNNLMemoryDescriptor {
      try DNNLMemoryDescriptor(dims: [batch, c, h, w], dataType: .f32, format: .nhwc)
    }
    func weights(_ dims: [Int]) throws -> DNNLMemoryDescriptor {
      try DNNLMemoryDescriptor(dims: dims, dataType: .f32, format: .any)
    }
    func bias(_ c: Int) throws -> DNNLMemoryDescriptor {
      try DNNLMemoryDescriptor(dims: [c], dataType: .f32, format: .a)
    }
    var built: [(String, DNNLPrimitive)] = []
    func addConvolution(
      _ label: String, source: DNNLMemoryDescriptor, weights weightDims: [Int],
      bias biasChannels: Int?,
      destination: DNNLMemoryDescriptor, stride: Int, pad: Int,
      attributes: DNNLAttributes = DNNLAttributes()
    ) throws {
      let primitive = try engine.makeConvolution(
        source: source, weights: weights(weightDims), bias: biasChannels.map { try bias($0) },
        destination: destination, strides: [stride, stride], dilations: [1, 1],
        paddingLeft: [pad, pad], paddingRight: [pad, pad], attributes: attributes)
      built.append((label, primitive))
    }
    try addConvolution(
      "stem 4x4 s4 3->40", source: nhwc(3, 224, 224), weights: [40, 3, 4, 4], bias: 40,
      destination: nhwc(40, 56, 56), stride: 4, pad: 0)
    try addConvolution(
      "3x3 64->64 + relu", source: nhwc(64, 56, 56), weights: [64, 64, 3, 3], bias: 64,
      destination: nhwc(64, 56, 56), stride: 1, pad: 1,
      attributes: DNNLAttributes(postOps: [.eltwise(.relu())]))
    try addConvolution(
      "partial 3x3 10->10 (dense slice)", source: nhwc(10, 56, 56), weights: [10, 10, 3, 3],
      bias: nil, destination: nhwc(10, 56, 56), stride: 1, pad: 1)
    try addConvolution(
      "depthwise 3x3 128", source: nhwc(128, 28, 28), weights: [128, 1, 1, 3, 3], bias: 128,
      destination: nhwc(128, 28, 28), stride: 1, pad: 1)
    try addConvolution(
      "1x1 40->80 + gelu", source: nhwc(40, 56, 56), weights: [80, 40, 1, 1], bias: 80,
      destination: nhwc(80, 56, 56), stride: 1, pad: 0,
      attributes: DNNLAttributes(postOps: [.eltwise(.geluErf)]))
    try addConvolution(
      "1x1 80->40 + residual sum", source: nhwc(80, 56, 56), weights: [40, 80, 1, 1], bias: 40,
      destination: nhwc(40, 56, 56), stride: 1, pad: 0,
      attributes: DNNLAttributes(postOps: [.sum()]))
    try addConvolution(
      "2x2 s2 merging 40->80", source: nhwc(40, 56, 56), weights: [80, 40, 2, 2], bias: nil,
      destination: nhwc(80, 28, 28), stride: 2, pad: 0)
    built.append(
      (
        "max pool 3x3 s2",
        try engine.makePooling(
          .max, source: nhwc(64, 56, 56), destination: nhwc(64, 28, 28), kernel: [3, 3],
          strides: [2, 2], paddingLeft: [1, 1], paddingRight: [0, 0])
      ))
    built.append(
      (
        "global average pool",
        try engine.makePooling(
          .averageExcludingPadding, source: nhwc(320, 7, 7), destination: nhwc(320, 1, 1),
          kernel: [7, 7], strides: [1, 1], paddingLeft: [0, 0], paddingRight: [0, 0])
      ))
    built.append(
      (
        "inner product 1280->1000",
        try engine.makeInnerProduct(
          source: DNNLMemoryDescriptor(dims: [batch, 1280], dataType: .f32, format: .ab),
          weights: weights([1000, 1280]), bias: bias(1000),
          destination: DNNLMemoryDescriptor(dims: [batch, 1000], dataType: .f32, format: .ab))
      ))
    built.append(
      (
        "input reorder NCHW->NHWC",
        try engine.makeReorder(
          from: DNNLMemoryDescriptor(dims: [batch, 3, 224, 224], dataType: .f32, format: .nchw),
          to: nhwc(3, 224, 224))
      ))
    built.append(
      (
        "hardswish eltwise",
        try engine.makeEltwise(.hardswish, data: nhwc(64, 28, 28))
      ))
    built.append(
      (
        "binary add",
        try engine.makeBinary(
          .add, source0: nhwc(64, 28, 28), source1: nhwc(64, 28, 28), destination: nhwc(64, 28, 28))
      ))
    return built.map { ($0.0, $0.1.implementation) }
  }

  @Test("no representative NHWC primitive uses a reference kernel", arguments: [1, 16])
  func noReferenceKernels(batch: Int) throws {
    let implementations = try representativePrimitives(batch: batch)
    #expect(implementations.count == 13)
    for (label, implementation) in implementations {
      #expect(
        !DNNLPrimitive.isReference(implementation),
        "\(label) at batch \(batch) uses \(implementation)")
    }
  }

  @Test("strict mode rejects a primitive that would run a reference kernel")
  func strictModeRejectsReference() throws {
    // A convolution reading and writing a strided channel slice (FasterNet's partial conv done
    // naively) is the known slow case on this library.
    let strict = try DNNLEngine(threads: 1, strict: true)
    let relaxed = try DNNLEngine(threads: 1, strict: false)
    func make(_ engine: DNNLEngine) throws -> DNNLPrimitive {
      let full = try DNNLMemoryDescriptor(dims: [1, 16, 32, 32], dataType: .f32, format: .nhwc)
      let slice = try full.submemory(dims: [1, 4, 32, 32], offsets: [0, 0, 0, 0])
      return try engine.makeConvolution(
        source: slice,
        weights: DNNLMemoryDescriptor(dims: [4, 4, 3, 3], dataType: .f32, format: .any),
        bias: nil, destination: slice, strides: [1, 1], dilations: [1, 1], paddingLeft: [1, 1],
        paddingRight: [1, 1], label: "partial conv on a slice")
    }
    let primitive = try make(relaxed)
    // The check is only meaningful when the relaxed engine did pick a reference kernel.
    try #require(
      primitive.usesReferenceImplementation,
      "expected a ref kernel for a conv on a channel slice, got \(primitive.implementation)")
    let error = #expect(throws: DNNLError.self) { try make(strict) }
    #expect(error?.reason.contains("reference implementation") == true)
  }

  @Test("version info names the library, runtime, ISA and the engine's thread count")
  func versionInfo() {
    let info = DNNLEngine.versionInfo(threads: 3)
    #expect(info["onednn"]?.hasPrefix("2.") == true)
    #expect(info["onednn.cpu_runtime"] == "omp")
    #expect(info["onednn.isa"] != nil)
    #expect(info["onednn.max_threads"] == "3")
    let defaults = DNNLEngine.versionInfo(threads: nil)
    #expect(defaults["onednn.max_threads"] == OpenMPRuntime.defaultThreadCount.map(String.init))
  }
}
