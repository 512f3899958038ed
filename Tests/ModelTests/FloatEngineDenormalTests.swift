import Testing

@testable import Model

/// The float engine runs its kernels with flush-to-zero / denormals-are-zero (see
/// `DNNLDenormals`) on every OpenMP thread, and leaves the caller's floating-point mode alone.
@Suite("float engine subnormal handling")
struct FloatEngineDenormalTests {
  /// `x * 1e-20` over a tensor large enough that both OpenMP threads take a share: inputs of
  /// 1e-20 give 1e-40, a subnormal that flush-to-zero turns into 0; inputs of 3 give 3e-20,
  /// a normal number that must be exact.
  ///
  /// With `IMAGENET_EVAL_KEEP_DENORMALS=1` the same run must keep every subnormal product,
  /// which shows the input really produces subnormals in oneDNN's kernel.
  @Test("kernels flush subnormal results on every thread; the caller's mode is restored")
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
    // Control bits only (6–15: DAZ, exception masks, rounding, FTZ); bits 0–5 are sticky
    // exception flags that any arithmetic may raise.
    let controlBits: UInt32 = 0xFFC0
    let before = DNNLDenormals.controlRegister() & controlBits
    for _ in 0..<2 {
      try input.withUnsafeBufferPointer { i in
        try output.withUnsafeMutableBufferPointer { try engine.run(input: i, output: $0) }
      }
      #expect(DNNLDenormals.controlRegister() & controlBits == before)
    }
    let product = input[64] * Float(1e-20)
    // Without the engine's mode, the tiny product is a subnormal on this thread.
    let tiny = input[0] * Float(1e-20)
    #expect(tiny != 0 && tiny.isSubnormal)
    let expectedTiny: Float = DNNLDenormals.flushes ? 0 : tiny
    var unexpectedTiny = 0
    var wrong = 0
    for (k, value) in output.enumerated() {
      if (k / 64) % 2 == 0 {
        if value != expectedTiny { unexpectedTiny += 1 }
      } else if value != product {
        wrong += 1
      }
    }
    #expect(
      unexpectedTiny == 0,
      "\(unexpectedTiny) of \(count / 2) tiny products differ from \(expectedTiny) (flushing: \(DNNLDenormals.flushes))"
    )
    #expect(wrong == 0, "\(wrong) normal products differ from \(product)")
  }
}
