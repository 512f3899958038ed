import Testing

@testable import Model

/// The float engine runs its kernels with flush-to-zero / denormals-are-zero (see
/// `DNNLDenormals`) on every OpenMP thread, and leaves the caller's floating-point mode alone.
@Suite("float engine subnormal handling")
struct FloatEngineDenormalTests {
  /// `x * 1e-20` over a tensor large enough that both OpenMP threads take a share: inputs of
  /// 1e-20 give 1e-40, a subnormal that flush-to-zero turns into 0; inputs of 3 give 3e-20,
  /// a normal number that must be exact.
  @Test(
    "kernels flush subnormal results on every thread; the caller's mode is restored",
    .enabled(if: DNNLDenormals.flushes, "IMAGENET_EVAL_KEEP_DENORMALS=1 keeps subnormals"))
  func subnormalsFlushOnEveryThread() throws {
    let shape = [2, 64, 32, 32]
    let count = shape.reduce(1, *)
    let graph = singleNodeGraph(
      .binary(.mul), input: shape, constants: [Tensor(shape: [], floats: [1e-20])])
    let engine = try FloatEngine(
      graph: graph, batchSize: 2, threads: 2, strict: true, requiresClassifierOutput: false)
    // Alternating blocks of 64 so each thread's share holds both kinds.
    let input = (0..<count).map { ($0 / 64) % 2 == 0 ? Float(1e-20) : Float(3) }
    var output = [Float](repeating: .nan, count: count)
    let before = DNNLDenormals.controlRegister()
    for _ in 0..<2 {
      try input.withUnsafeBufferPointer { i in
        try output.withUnsafeMutableBufferPointer { try engine.run(input: i, output: $0) }
      }
      #expect(DNNLDenormals.controlRegister() == before)
    }
    let product = Float(3) * Float(1e-20)
    var subnormal = 0
    var wrong = 0
    for (k, value) in output.enumerated() {
      if (k / 64) % 2 == 0 {
        if value != 0 { subnormal += 1 }
      } else if value != product {
        wrong += 1
      }
    }
    #expect(subnormal == 0, "\(subnormal) subnormal products were not flushed")
    #expect(wrong == 0, "\(wrong) normal products differ from \(product)")
    // Without the engine's mode, the same product is a subnormal on this thread.
    let tiny = input[0] * input[0]
    #expect(tiny != 0 && tiny.isSubnormal)
  }
}
