import CFloatKernels
import Foundation
import TestSupport
import Testing

@testable import Model

/// The AVX-512 GELU of `CFloatKernels` against `x * (1 + erf(x / sqrt 2)) / 2` evaluated in
/// double precision with libm's erf: a dense sweep, the interval edges of its table, the
/// special values, every tail length, and the team split of `GeluKernel`.
@Suite(
  "AVX-512 GELU vs libm erf",
  .requiresAVX512F(otherwise: "oneDNN's GELU"))
struct GeluKernelTests {
  private func exact(_ x: Float) -> Double {
    let v = Double(x)
    return v * (1 + Foundation.erf(v / 2.0.squareRoot())) / 2
  }

  private func gelu(_ input: [Float]) -> [Float] {
    var output = [Float](repeating: .nan, count: input.count)
    input.withUnsafeBufferPointer { x in
      output.withUnsafeMutableBufferPointer { y in
        ie_float_gelu_avx512(x.baseAddress, y.baseAddress, input.count)
      }
    }
    return output
  }

  @Test("within 2.5e-7 * max(1, |x|) of the exact value on [-12, 12] and at every table edge")
  func accuracy() {
    let sweep = (0...400_000).map { Float(-12.0 + 24.0 * Double($0) / 400_000) }
    // Each quarter of [0, 8) is its own polynomial: both sides of every edge, both signs.
    let edges = (0...32).flatMap { k -> [Float] in
      let edge = Float(k) / 4
      return [edge.nextDown, edge, edge.nextUp].flatMap { [$0, -$0] }
    }
    let input = sweep + edges
    let output = gelu(input)
    var worst = (error: 0.0, x: Float(0))
    for (x, y) in zip(input, output) {
      let error = abs(Double(y) - exact(x)) / max(1, Double(abs(x)))
      if error > worst.error { worst = (error, x) }
    }
    #expect(worst.error <= 2.5e-7, "largest scaled error \(worst.error) at x = \(worst.x)")
  }

  @Test("special values follow x * (1 + erf(x / sqrt 2)) / 2")
  func specialValues() {
    let input: [Float] = [0, -0.0, .infinity, -.infinity, .nan, 1e30, -1e30, 8, -8, 100, -100]
    let output = gelu(input)
    #expect(output[0] == 0 && output[1] == 0)
    #expect(output[2] == .infinity)
    #expect(output[3].isNaN)  // -inf * 0, as the formula gives
    #expect(output[4].isNaN)
    #expect(output[5] == 1e30 && output[6] == 0)
    // Past 8 the factor is exactly 1 or 0 (Phi(-8) is 6e-16).
    #expect(output[7] == 8 && output[8] == 0)
    #expect(output[9] == 100 && output[10] == 0)
  }

  @Test("every length 0…70: the masked tail writes nothing past the end; in place is the same")
  func tails() {
    var random = SplitMix64(seed: 0x6E1)
    for count in 0...70 {
      let input = (0..<count).map { _ in Float(random.nextUnit() * 12 - 6) }
      var output = [Float](repeating: 42, count: count + 16)
      input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
          ie_float_gelu_avx512(x.baseAddress, y.baseAddress, count)
        }
      }
      #expect(output[count...].allSatisfy { $0 == 42 }, "count \(count)")
      var inPlace = input
      inPlace.withUnsafeMutableBufferPointer {
        ie_float_gelu_avx512($0.baseAddress, $0.baseAddress, count)
      }
      #expect(inPlace == Array(output[..<count]), "count \(count)")
    }
  }

  @Test("GeluKernel over a buffer the team splits equals one call over all of it")
  func teamSplit() throws {
    var random = SplitMix64(seed: 0x7EA)
    // Odd, and large enough for several threads (KernelTeam.minimumBytesPerThread).
    let count = 16 * 1024 * 5 + 7
    let input = (0..<count).map { _ in Float(random.nextUnit() * 16 - 8) }
    let expected = gelu(input)
    var output = [Float](repeating: .nan, count: count)
    try input.withUnsafeBufferPointer { x in
      try output.withUnsafeMutableBufferPointer { y in
        try GeluKernel(source: x.baseAddress!, destination: y.baseAddress!, count: count).run()
      }
    }
    #expect(output == expected)
  }
}
