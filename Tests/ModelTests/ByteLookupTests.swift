import CInt8Kernels
import Foundation
import TestSupport
import Testing

@testable import Model

/// The AVX-512 BW byte lookup of `CInt8Kernels` against a plain `table[byte]` loop: every byte
/// value, every length around the 64-byte blocks and tails, in place, and strided rows (the
/// channel slices of Split/Concat).
@Suite(
  "AVX-512 byte lookup vs table[byte]",
  .enabled(
    if: ie_int8_has_avx512bw() != 0, "this CPU has no AVX-512 BW; the engine uses the scalar lookup"
  ))
struct ByteLookupTests {
  private func randomBytes(_ count: Int, _ random: inout SplitMix64) -> [UInt8] {
    (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
  }

  @Test("every length 0…200 and a large odd one, random tables, also in place")
  func contiguous() {
    var random = SplitMix64(seed: 0x1ABE1)
    // Byte i of the first input is i: each table entry is read at least once.
    for count in Array(0...200) + [4099] {
      let table = randomBytes(256, &random)
      let input = count == 256 ? (0..<256).map { UInt8($0) } : randomBytes(count, &random)
      let expected = input.map { table[Int($0)] }
      var output = [UInt8](repeating: 0xA5, count: count + 64)
      input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
          ie_int8_lookup_avx512bw(x.baseAddress, y.baseAddress, count, table)
        }
      }
      #expect(Array(output[..<count]) == expected, "count \(count)")
      // Nothing past `count` is written (the tail is a masked store).
      #expect(output[count...].allSatisfy { $0 == 0xA5 }, "count \(count)")
      var inPlace = input
      inPlace.withUnsafeMutableBufferPointer {
        ie_int8_lookup_avx512bw($0.baseAddress, $0.baseAddress, count, table)
      }
      #expect(inPlace == expected, "in place, count \(count)")
      var scalar = [UInt8](repeating: 0, count: count)
      input.withUnsafeBufferPointer { x in
        scalar.withUnsafeMutableBufferPointer { y in
          guard let xb = x.baseAddress, let yb = y.baseAddress else { return }
          table.withUnsafeBufferPointer {
            Int8Passes.scalarLookup(xb, yb, count: count, table: $0.baseAddress!)
          }
        }
      }
      #expect(scalar == expected, "scalar path, count \(count)")
    }
  }

  @Test("strided rows: a channel slice of NHWC codes, the other channels untouched")
  func rows() {
    var random = SplitMix64(seed: 0x5117CE)
    for (pixels, stride, offset, channels) in [
      (3136, 40, 0, 10), (3136, 40, 10, 30), (49, 320, 80, 240), (7, 200, 3, 130),
    ] {
      let table = randomBytes(256, &random)
      let source = randomBytes(pixels * stride, &random)
      let original = randomBytes(pixels * stride, &random)
      var expected = original
      for p in 0..<pixels {
        for c in 0..<channels {
          expected[p * stride + offset + c] = table[Int(source[p * stride + offset + c])]
        }
      }
      var output = original
      source.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
          ie_int8_lookup_rows_avx512bw(
            x.baseAddress! + offset, stride, y.baseAddress! + offset, stride, pixels, channels,
            table)
        }
      }
      #expect(output == expected, "\(pixels) pixels, \(channels) of \(stride) channels")
    }
  }
}
