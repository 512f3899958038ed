import CInt8Kernels
import Foundation

/// The Swift passes of `Int8Engine` that run between oneDNN primitives, vectorised and split
/// across threads (`KernelTeam`), each bit-identical to its scalar definition:
/// `Int8Layout.quantize`, `LookupTable.apply`, `ReferenceKernels.add` and
/// `ReferenceKernels.globalAveragePool` (checked in Tests/ModelTests/Int8PassTests.swift).
///
/// Rounding half to even uses the float32 identity `(v + 1.5·2²³)`: for |v| < 2²², the sum
/// lies in [2²³, 2²⁴), where the spacing of floats is 1, so the addition itself rounds `v` to
/// the nearest integer with ties to even (the default rounding mode), and the integer is the
/// low bits of the sum's bit pattern. No libm call, no SSE4.1 `roundps` needed. Every caller
/// clamps `v` to a code range first, far inside ±2²².
enum Int8Passes {
  typealias Floats = SIMD16<Float>
  typealias Ints = SIMD16<Int32>

  /// 1.5·2²³ and its bit pattern.
  private static let magic = Floats(repeating: 12_582_912)
  private static let magicBits = Ints(repeating: 0x4B40_0000)

  /// `round_half_even(v)` for clamped `v` (|v| < 2²²), as integers.
  @inline(__always)
  static func roundedToEven(_ v: Floats) -> Ints {
    unsafeBitCast(v + magic, to: Ints.self) &- magicBits
  }

  /// `Requantization.store` for values already inside `[minimum, maximum]` of the code type or
  /// beyond it: saturate, then round half to even (NaN cannot arise from finite operands).
  @inline(__always)
  static func store(_ y: Floats, minimum: Floats, maximum: Floats) -> Ints {
    var v = y.replacing(with: minimum, where: y .< minimum)
    v.replace(with: maximum, where: v .> maximum)
    return roundedToEven(v)
  }

  // MARK: Quantise the model input

  /// `Int8Layout.quantize` for 8-bit codes: row-major (NCHW) floats in, engine-layout (NHWC)
  /// codes out, `saturate(round_half_even(x / scale)) + zp` with NaN as the zero point.
  static func quantize<Code: FixedWidthInteger & SIMDScalar>(
    _ values: UnsafePointer<Float>, count: Int, shape: [Int], params: QuantParams,
    into codes: UnsafeMutablePointer<Code>, threads: Int
  ) {
    let scale = params.scale
    let zp = params.zeroPoint
    let low = Float(params.type.minimum) - Float(zp)
    let high = Float(params.type.maximum) - Float(zp)
    let (c, hw) = Int8Layout.channelsLast(shape) ?? (1, count)
    let pixels = count / c
    let team = min(threads, KernelTeam.threads(forBytes: count * 4))
    KernelTeam.forEachRange(pixels, threads: team) { range in
      quantizePixels(
        range, values: values, c: c, hw: hw, scale: scale, zeroPoint: zp, low: low, high: high,
        into: codes)
    }
  }

  @inline(__always)
  private static func code(_ x: Float, scale: Float, zeroPoint: Int32, low: Float, high: Float)
    -> Int32
  {
    let v = x / scale
    let clamped = v.isNaN ? 0 : (v < low ? low : (v > high ? high : v))
    return (clamped + 12_582_912).bitPattern.toInt32 &- 0x4B40_0000 &+ zeroPoint
  }

  /// Pixels `range` of the flattened `[n·hw]` pixel index, every channel.
  private static func quantizePixels<Code: FixedWidthInteger & SIMDScalar>(
    _ range: Range<Int>, values: UnsafePointer<Float>, c: Int, hw: Int, scale: Float,
    zeroPoint: Int32, low: Float, high: Float, into codes: UnsafeMutablePointer<Code>
  ) {
    let scales = Floats(repeating: scale)
    let lows = Floats(repeating: low)
    let highs = Floats(repeating: high)
    let zps = Ints(repeating: zeroPoint)
    var q = range.lowerBound
    while q < range.upperBound {
      // One image's part of the range.
      let n = q / hw
      let first = q - n * hw
      let last = min(hw, first + (range.upperBound - q))
      if usesVectorLookup, Code.bitWidth == 8 {
        ie_int8_quantize_avx512(
          values + n * c * hw, c, hw, first, last, scale, zeroPoint, low, high,
          UnsafeMutableRawPointer(codes + n * hw * c).assumingMemoryBound(to: UInt8.self))
        q += last - first
        continue
      }
      for ch in 0..<c {
        let plane = values + (n * c + ch) * hw
        let out = codes + n * hw * c + ch
        var p = first
        while p + 16 <= last {
          let v = UnsafeRawPointer(plane + p).loadUnaligned(as: Floats.self) / scales
          var clamped = v.replacing(with: lows, where: v .< lows)
          clamped.replace(with: highs, where: clamped .> highs)
          clamped.replace(with: 0, where: v .!= v)
          let k = SIMD16<Code>(truncatingIfNeeded: roundedToEven(clamped) &+ zps)
          if c == 1 {
            UnsafeMutableRawPointer(out + p).storeBytes(of: k, as: SIMD16<Code>.self)
          } else {
            // In bounds by construction: plain wrapping index arithmetic, no overflow traps.
            var o = out + p &* c
            for j in 0..<16 {
              o.pointee = k[j]
              o += c
            }
          }
          p += 16
        }
        while p < last {
          out[p * c] = Code(
            truncatingIfNeeded: code(
              plane[p], scale: scale, zeroPoint: zeroPoint, low: low, high: high))
          p += 1
        }
      }
      q += last - first
    }
  }

  // MARK: Lookup tables

  /// `output[i] = table[input[i]]` on bytes (codes by bit pattern); `input` may equal `output`.
  static func lookup(
    _ input: UnsafePointer<UInt8>, count: Int, table: UnsafePointer<UInt8>,
    into output: UnsafeMutablePointer<UInt8>, threads: Int
  ) {
    // Blocks of 64 bytes so threads never share a cache line.
    let blocks = (count + 63) / 64
    KernelTeam.forEachRange(blocks, threads: min(threads, KernelTeam.threads(forBytes: count))) {
      range in
      let start = range.lowerBound * 64
      let end = min(count, range.upperBound * 64)
      lookup(input + start, output + start, count: end - start, table: table)
    }
  }

  /// Whether the passes run the AVX-512 kernels of `CInt8Kernels` (byte lookups: 16 byte
  /// shuffles per 64 bytes instead of 64 table loads; quantising the input; adds). The Swift
  /// code of this module is compiled for baseline x86-64, so the choice is made once at run
  /// time from the CPU; both paths give the same bytes (Tests/ModelTests/ByteLookupTests.swift,
  /// Int8VectorKernelTests.swift).
  static let usesVectorLookup = ie_int8_has_avx512bw() != 0

  /// `output[i] = table[input[i]]` for `count` bytes on the calling thread.
  @inline(__always)
  static func lookup(
    _ input: UnsafePointer<UInt8>, _ output: UnsafeMutablePointer<UInt8>, count: Int,
    table: UnsafePointer<UInt8>
  ) {
    if usesVectorLookup {
      ie_int8_lookup_avx512bw(input, output, count, table)
    } else {
      scalarLookup(input, output, count: count, table: table)
    }
  }

  /// The portable lookup: eight table loads per 64-bit word.
  static func scalarLookup(
    _ input: UnsafePointer<UInt8>, _ output: UnsafeMutablePointer<UInt8>, count: Int,
    table: UnsafePointer<UInt8>
  ) {
    var i = 0
    while i + 8 <= count {
      // Eight loads from the 256-byte table per 64-bit word, one store.
      let w = UnsafeRawPointer(input + i).loadUnaligned(as: UInt64.self)
      var r = UInt64(table[Int(w & 0xFF)])
      r |= UInt64(table[Int((w >> 8) & 0xFF)]) << 8
      r |= UInt64(table[Int((w >> 16) & 0xFF)]) << 16
      r |= UInt64(table[Int((w >> 24) & 0xFF)]) << 24
      r |= UInt64(table[Int((w >> 32) & 0xFF)]) << 32
      r |= UInt64(table[Int((w >> 40) & 0xFF)]) << 40
      r |= UInt64(table[Int((w >> 48) & 0xFF)]) << 48
      r |= UInt64(table[Int(w >> 56)]) << 56
      UnsafeMutableRawPointer(output + i).storeBytes(of: r, as: UInt64.self)
      i += 8
    }
    while i < count {
      output[i] = table[Int(input[i])]
      i += 1
    }
  }

  // MARK: Global average pooling

  /// `ReferenceKernels.globalAveragePool` on NHWC 8-bit codes: channels summed 16 at a time
  /// (exact in int32: at most 2³¹ / 255 pixels).
  static func globalAveragePool<Code: FixedWidthInteger & SIMDScalar>(
    _ input: UnsafePointer<Code>, inputParams: QuantParams, batch: Int, pixels: Int,
    channels: Int, output: UnsafeMutablePointer<Code>, outputParams: QuantParams
  ) {
    let multiplier = inputParams.scale / (Float(pixels) * outputParams.scale)
    let zpIn = inputParams.zeroPoint
    let zpOut = Float(outputParams.zeroPoint)
    let type = outputParams.type
    let multipliers = Floats(repeating: multiplier)
    let zpOuts = Floats(repeating: zpOut)
    let minimums = Floats(repeating: Float(type.minimum))
    let maximums = Floats(repeating: Float(type.maximum))
    let zpIns = Ints(repeating: zpIn)
    for n in 0..<batch {
      let image = input + n * pixels * channels
      var ch = 0
      while ch + 16 <= channels {
        var acc = Ints(repeating: 0)
        for p in 0..<pixels {
          acc &+= Ints(
            truncatingIfNeeded: UnsafeRawPointer(image + p * channels + ch).loadUnaligned(
              as: SIMD16<Code>.self))
        }
        acc &-= zpIns &* Int32(pixels)
        let y = Floats(acc) * multipliers + zpOuts
        UnsafeMutableRawPointer(output + n * channels + ch).storeBytes(
          of: SIMD16<Code>(truncatingIfNeeded: store(y, minimum: minimums, maximum: maximums)),
          as: SIMD16<Code>.self)
        ch += 16
      }
      while ch < channels {
        var acc: Int32 = 0
        for p in 0..<pixels { acc &+= Int32(image[p * channels + ch]) }
        acc &-= zpIn &* Int32(pixels)
        let y = Float(acc) * multiplier + zpOut
        output[n * channels + ch] = Code(truncatingIfNeeded: Requantization.store(y, type: type))
        ch += 1
      }
    }
  }
}

extension UInt32 {
  @inline(__always) fileprivate var toInt32: Int32 { Int32(bitPattern: self) }
}

/// A `LookupTable` as 256 output bytes indexed by the input code's bit pattern, the form
/// `Int8Passes.lookup` reads (allocated once, so running allocates nothing).
final class Int8ByteTable {
  let entries: UnsafeMutablePointer<UInt8>

  init(_ table: LookupTable) {
    entries = .allocate(capacity: 256)
    let offset = Int(-table.inputType.minimum)
    for bits in 0..<256 {
      let code = table.inputType == .int8 ? Int(Int8(truncatingIfNeeded: bits)) : bits
      entries[bits] = UInt8(truncatingIfNeeded: table.entries[code + offset])
    }
  }

  deinit { entries.deallocate() }
}
