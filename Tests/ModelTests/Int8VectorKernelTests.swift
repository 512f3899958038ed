import CInt8Kernels
import Foundation
import TestSupport
import Testing

@testable import Model

/// The AVX-512 kernels of `CInt8Kernels` that replace Swift passes of the int8 engine, each
/// against the plain scalar definition it must reproduce bit for bit: every length 0…200 (all
/// vector tails), both 8-bit code types with and without zero points, and the awkward floats of
/// quantisation (NaN, ±∞, ±huge, ties, ±0, subnormals).
@Suite(
  "AVX-512 int8 kernels vs scalar definitions",
  .enabled(
    if: ie_int8_has_avx512bw() != 0,
    "this CPU has no AVX-512 BW/VL; the engine runs the Swift passes instead"))
struct Int8VectorKernelTests {
  /// Floats hitting every branch of `clamp(round_half_even(x / scale)) + zp`.
  private func awkwardFloats(_ count: Int, scale: Float, random: inout SplitMix64) -> [Float] {
    let specials: [Float] = [
      .nan, -.nan, .infinity, -.infinity, 0, -0.0, .greatestFiniteMagnitude,
      -.greatestFiniteMagnitude, 3e38, -3e38, 1e30, -1e30, .leastNonzeroMagnitude,
      -.leastNonzeroMagnitude, .leastNormalMagnitude,
    ]
    return (0..<count).map { _ in
      switch random.next() % 6 {
      case 0: return specials[Int(random.next() % UInt64(specials.count))]
      // Exact ties k + ½ (in code units) over and beyond the code range.
      case 1: return (Float(Int(random.next() % 601) - 300) + 0.5) * scale
      case 2: return Float(Int(random.next() % 601) - 300) * scale
      default: return (Float(random.next() % 1_000_000) / 1_000_000 * 320 - 160) * scale
      }
    }
  }

  private static let quantizeParams: [(QuantizedType, Float, Int32)] = [
    (.int8, 0.017, 0), (.int8, 0.5, -7), (.uint8, 0.021, 117), (.uint8, 0.03, 0),
    (.uint8, 1e-3, 255),
  ]

  @Test("quantize equals Int8Layout.quantize: 1, 3, 4 and 5 channels, 0…200 pixels")
  func quantize() throws {
    var random = SplitMix64(seed: 0x0_9A17)
    var checked = 0
    for (type, scale, zeroPoint) in Self.quantizeParams {
      let params = try QuantParams(type: type, scale: scale, zeroPoint: zeroPoint)
      let low = Float(type.minimum) - Float(zeroPoint)
      let high = Float(type.maximum) - Float(zeroPoint)
      for channels in [1, 3, 4, 5] {
        for pixels in 0...200 {
          let values = awkwardFloats(channels * pixels, scale: scale, random: &random)
          var expected = [UInt8](repeating: 0, count: channels * pixels)
          try values.withUnsafeBufferPointer { x in
            try expected.withUnsafeMutableBytes {
              try Int8Layout.quantize(
                x, shape: [1, channels, 1, pixels], params: params, into: $0.baseAddress!)
            }
          }
          // The whole image, then a middle range of pixels (the other slots untouched).
          let first = pixels / 3
          let last = pixels - pixels / 5
          for (from, to) in [(0, pixels), (first, last)] {
            var actual = [UInt8](repeating: 0xA5, count: channels * pixels + 64)
            values.withUnsafeBufferPointer { x in
              actual.withUnsafeMutableBufferPointer { y in
                ie_int8_quantize_avx512(
                  x.baseAddress, channels, pixels, from, to, scale, zeroPoint, low, high,
                  y.baseAddress)
              }
            }
            for p in 0..<pixels {
              for ch in 0..<channels {
                let i = p * channels + ch
                let want = (from..<to).contains(p) ? expected[i] : 0xA5
                if actual[i] != want {
                  Issue.record(
                    "\(type) scale \(scale) zp \(zeroPoint), \(channels) channels, \(pixels) pixels, range \(from)..<\(to): pixel \(p) channel \(ch) of x = \(values[ch * pixels + p]) is \(actual[i]), expected \(want)"
                  )
                  return
                }
              }
            }
            #expect(actual[(channels * pixels)...].allSatisfy { $0 == 0xA5 })
            checked += 1
          }
        }
      }
    }
    #expect(checked == Self.quantizeParams.count * 4 * 201 * 2)
  }

  @Test("zero-point store codes and near-tie scan equal their scalar definitions, 0…200 values")
  func storeCodesAndTies() {
    var random = SplitMix64(seed: 0x5_70BE)
    let margin = Int8ZeroPointStore.tieMargin
    for (type, zeroPoint) in [(QuantizedType.int8, Int32(0)), (.uint8, 128), (.uint8, 3)] {
      let low = Float(type.minimum) - Float(zeroPoint)
      let high = Float(type.maximum) - Float(zeroPoint)
      for count in 0...200 {
        // Awkward floats in code units, and values a little off exact ties on both sides.
        var values = awkwardFloats(count, scale: 1, random: &random)
        for i in stride(from: 0, to: count, by: 7) {
          let offset = Float(Int(random.next() % 9) - 4) * margin / 2
          values[i] = Float(Int(random.next() % 601) - 300) + 0.5 + offset
        }
        let expected = values.map { v -> UInt8 in
          let clamped = v.isNaN ? 0 : min(max(v, low), high)
          return UInt8(truncatingIfNeeded: Int32(clamped.rounded(.toNearestOrEven)) + zeroPoint)
        }
        let first = count / 4
        var actual = [UInt8](repeating: 0xA5, count: count + 64)
        values.withUnsafeBufferPointer { x in
          actual.withUnsafeMutableBufferPointer { y in
            ie_int8_store_codes_avx512(
              x.baseAddress, first, count, zeroPoint, low, high, y.baseAddress)
          }
        }
        #expect(Array(actual[..<first]).allSatisfy { $0 == 0xA5 }, "\(type) \(count)")
        #expect(Array(actual[first..<count]) == Array(expected[first...]), "\(type) \(count)")
        #expect(actual[count...].allSatisfy { $0 == 0xA5 }, "\(type) \(count)")

        let ties = values.indices.filter {
          abs(values[$0] - values[$0].rounded(.down) - 0.5) < margin
        }
        var found = [UInt32](repeating: 0, count: max(count, 1))
        let n = values.withUnsafeBufferPointer { x in
          found.withUnsafeMutableBufferPointer {
            ie_int8_near_ties_avx512(x.baseAddress, count, margin, $0.baseAddress)
          }
        }
        #expect(found[..<n].map(Int.init) == ties, "\(count) values")
      }
    }
  }

  @Test("float-defined Add of codes equals its scalar definition: types, zero points, tails")
  func addFloat() throws {
    var random = SplitMix64(seed: 0xADD_F10A7)
    let cases: [(QuantParams, QuantParams, QuantParams)] = [
      (
        try QuantParams(type: .int8, scale: 0.021), try QuantParams(type: .int8, scale: 0.017),
        try QuantParams(type: .int8, scale: 0.03)
      ),
      (
        try QuantParams(type: .uint8, scale: 0.05, zeroPoint: 131),
        try QuantParams(type: .int8, scale: 0.011, zeroPoint: -3),
        try QuantParams(type: .uint8, scale: 0.02, zeroPoint: 7)
      ),
      // An output scale small enough that sums saturate at both ends.
      (
        try QuantParams(type: .int8, scale: 0.5, zeroPoint: 4),
        try QuantParams(type: .uint8, scale: 0.25, zeroPoint: 250),
        try QuantParams(type: .int8, scale: 0.01, zeroPoint: -1)
      ),
    ]
    for (pa, pb, po) in cases {
      for count in Array(0...70) + [1000] {
        let x = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let y = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        func value(_ byte: UInt8, _ p: QuantParams) -> Int32 {
          p.type == .int8 ? Int32(Int8(bitPattern: byte)) : Int32(byte)
        }
        let (low, high) = (
          Float(po.type.minimum) - Float(po.zeroPoint), Float(po.type.maximum) - Float(po.zeroPoint)
        )
        let expected = (0..<count).map { i -> UInt8 in
          let sum =
            Float(value(x[i], pa) - pa.zeroPoint) * pa.scale + Float(value(y[i], pb) - pb.zeroPoint)
            * pb.scale
          let v = sum / po.scale
          let clamped = v.isNaN ? 0 : min(max(v, low), high)
          return UInt8(truncatingIfNeeded: Int32(clamped.rounded(.toNearestOrEven)) + po.zeroPoint)
        }
        var out = [UInt8](repeating: 0xA5, count: count + 16)
        ie_int8_add_float_avx512(
          x, pa.type == .int8 ? 1 : 0, pa.zeroPoint, pa.scale, y, pb.type == .int8 ? 1 : 0,
          pb.zeroPoint, pb.scale, po.scale, po.zeroPoint, low, high, &out, 0, count)
        #expect(Array(out[..<count]) == expected, "\(pa) + \(pb) -> \(po), \(count) codes")
        #expect(out[count...].allSatisfy { $0 == 0xA5 })
      }
    }
  }

  @Test("quantize covers every code and saturates at both ends")
  func quantizeRange() throws {
    // Every code of both types from a ramp, so the comparison above is not vacuous.
    for (type, zeroPoint) in [(QuantizedType.int8, Int32(0)), (.uint8, 128)] {
      let scale: Float = 0.25
      let values = (0..<1200).map { Float($0 - 600) * scale / 2 }
      let low = Float(type.minimum) - Float(zeroPoint)
      let high = Float(type.maximum) - Float(zeroPoint)
      var codes = [UInt8](repeating: 0, count: values.count)
      values.withUnsafeBufferPointer { x in
        codes.withUnsafeMutableBufferPointer {
          ie_int8_quantize_avx512(
            x.baseAddress, 1, values.count, 0, values.count, scale, zeroPoint, low, high,
            $0.baseAddress)
        }
      }
      #expect(Set(codes).count == 256, "\(type): every code appears")
      // -150 / 0.25 = -600 saturates to the minimum; 0.125 / 0.25 = ½ ties to even (0).
      let minimumByte = UInt8(truncatingIfNeeded: type.minimum)
      let maximumByte = UInt8(truncatingIfNeeded: type.maximum)
      #expect(codes[0] == minimumByte)
      #expect(codes[1199] == maximumByte)
      #expect(codes[601] == UInt8(truncatingIfNeeded: zeroPoint), "½ rounds to even 0")
      #expect(codes[603] == UInt8(truncatingIfNeeded: zeroPoint + 2), "1½ rounds to even 2")
    }
  }

  @Test("narrow rows (packed four or two to a vector) equal table[byte], other bytes untouched")
  func packedRows() {
    var random = SplitMix64(seed: 0x9ACC)
    func bytes(_ n: Int) -> [UInt8] {
      (0..<n).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }
    for count in 0...40 {
      for rows in [0, 1, 2, 3, 4, 5, 7, 9] {
        let (inStride, outStride) = (count + Int(random.next() % 9), count + Int(random.next() % 5))
        let table = bytes(256)
        let source = bytes(rows * inStride + count)
        let original = bytes(rows * outStride + count + 64)
        var expected = original
        for r in 0..<rows {
          for c in 0..<count { expected[r * outStride + c] = table[Int(source[r * inStride + c])] }
        }
        var output = original
        output.withUnsafeMutableBufferPointer { y in
          ie_int8_lookup_rows_avx512bw(
            source, inStride, y.baseAddress, outStride, rows, count, table)
        }
        #expect(output == expected, "\(rows) rows of \(count), strides \(inStride), \(outStride)")
        // In place (the same rows in and out).
        var inPlace = source
        var inPlaceExpected = source
        for r in 0..<rows {
          for c in 0..<count {
            inPlaceExpected[r * inStride + c] = table[Int(source[r * inStride + c])]
          }
        }
        inPlace.withUnsafeMutableBufferPointer { x in
          ie_int8_lookup_rows_avx512bw(
            x.baseAddress, inStride, x.baseAddress, inStride, rows, count, table)
        }
        #expect(inPlace == inPlaceExpected, "in place: \(rows) rows of \(count)")
      }
    }
  }
}
