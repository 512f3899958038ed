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

/// `Int8TableKernel` (an imported model's elementwise chain as a code table) against the
/// table it is given, indexed by `code - minimum`: every input code of each type, output codes
/// of each type, and a buffer large enough to run on several threads.
@Suite("Int8 code tables")
struct Int8TableKernelTests {
  @Test("output code = entries[code - minimum] for int8 and uint8 inputs and outputs")
  func everyCode() {
    var random = SplitMix64(seed: 0x7AB1E)
    for (inputType, outputType) in [
      (QuantizedType.int8, QuantizedType.int8), (.int8, .uint8), (.uint8, .int8), (.uint8, .uint8),
    ] {
      let entries = (0..<256).map { _ in
        Int32(truncatingIfNeeded: random.next() % 256) + Int32(outputType.minimum)
      }
      let count = (1 << 20) + 37
      // Every code, then random ones.
      let input = (0..<count).map {
        $0 < 256 ? UInt8($0) : UInt8(truncatingIfNeeded: random.next())
      }
      var output = [UInt8](repeating: 0, count: count)
      input.withUnsafeBytes { x in
        output.withUnsafeMutableBytes { y in
          Int8TableKernel(
            entries: entries, inputType: inputType, outputType: outputType,
            source: x.baseAddress!, destination: y.baseAddress!, count: count
          ).run()
        }
      }
      let expected = input.map { pattern -> UInt8 in
        let code = inputType == .int8 ? Int32(Int8(bitPattern: pattern)) : Int32(pattern)
        let entry = entries[Int(code) - Int(inputType.minimum)]
        return outputType == .int8 ? UInt8(bitPattern: Int8(entry)) : UInt8(entry)
      }
      #expect(output == expected, "\(inputType) -> \(outputType)")
    }
  }
}
