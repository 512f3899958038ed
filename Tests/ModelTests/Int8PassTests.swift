import Foundation
import Testing

@testable import Model

/// The vectorised, multithreaded passes of `Int8Engine` (`Int8Passes`) against their scalar
/// definitions, bit for bit. Sizes are large enough that the passes split across two
/// threads (`KernelTeam.minimumBytesPerThread`) and leave a scalar tail.
@Suite("Int8 passes vs scalar kernels")
struct Int8PassTests {
  static let threadCounts = [1, 2]

  /// Floats that hit every branch of quantisation: ties at ±(k + 0.5)·scale, values beyond
  /// the code range, NaN, ±0 and infinities.
  private func awkwardFloats(_ count: Int, scale: Float, seed: UInt64) -> [Float] {
    var random = QuantRandom(seed: seed)
    return (0..<count).map { i in
      switch i % 7 {
      case 0: return (Float(Int.random(in: -300...300, using: &random)) + 0.5) * scale
      case 1: return Float.random(in: -200...200, using: &random) * scale
      case 2: return [Float.nan, .infinity, -.infinity, 0, -0.0][i % 5]
      default: return Float.random(in: -140...140, using: &random) * scale
      }
    }
  }

  @Test(
    "quantize equals Int8Layout.quantize (NCHW -> NHWC, int8 and uint8)", arguments: threadCounts)
  func quantize(threads: Int) throws {
    let cases: [([Int], QuantParams)] = [
      ([2, 3, 61, 67], try QuantParams(type: .int8, scale: 0.017)),
      ([2, 3, 61, 67], try QuantParams(type: .uint8, scale: 0.021, zeroPoint: 117)),
      ([3, 1, 40, 41], try QuantParams(type: .int8, scale: 0.5)),
      ([40_001], try QuantParams(type: .uint8, scale: 0.03, zeroPoint: 3)),
    ]
    for (index, (shape, params)) in cases.enumerated() {
      let count = shape.reduce(1, *)
      let values = awkwardFloats(count, scale: params.scale, seed: UInt64(index + 1))
      var expected = [UInt8](repeating: 0, count: count)
      var actual = [UInt8](repeating: 0xAA, count: count)
      try values.withUnsafeBufferPointer { x in
        try expected.withUnsafeMutableBytes {
          try Int8Layout.quantize(x, shape: shape, params: params, into: $0.baseAddress!)
        }
        actual.withUnsafeMutableBytes { out in
          if params.type == .int8 {
            Int8Passes.quantize(
              x.baseAddress!, count: count, shape: shape, params: params,
              into: out.baseAddress!.assumingMemoryBound(to: Int8.self), threads: threads)
          } else {
            Int8Passes.quantize(
              x.baseAddress!, count: count, shape: shape, params: params,
              into: out.baseAddress!.assumingMemoryBound(to: UInt8.self), threads: threads)
          }
        }
      }
      let differing = zip(actual, expected).filter { $0 != $1 }.count
      #expect(
        differing == 0, "shape \(shape) \(params.type): \(differing) of \(count) codes differ")
      #expect(Set(expected).count > 200, "the case covers the code range")
    }
  }

  @Test(
    "lookup equals LookupTable.apply for every type pair, also in place", arguments: threadCounts)
  func lookup(threads: Int) throws {
    let count = 100_003
    var random = QuantRandom(seed: 77)
    let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    let pairs: [(QuantParams, QuantParams)] = [
      (try QuantParams(type: .int8, scale: 0.04), try QuantParams(type: .int8, scale: 0.03)),
      (
        try QuantParams(type: .uint8, scale: 0.05, zeroPoint: 130),
        try QuantParams(type: .uint8, scale: 0.02, zeroPoint: 10)
      ),
      (try QuantParams(type: .int8, scale: 0.06), try QuantParams(type: .uint8, scale: 0.01)),
      (
        try QuantParams(type: .uint8, scale: 0.03, zeroPoint: 100),
        try QuantParams(type: .int8, scale: 0.02, zeroPoint: -5)
      ),
    ]
    for nonlinearity in [Nonlinearity.gelu, .sigmoid] {
      for (input, output) in pairs {
        let table = try LookupTable(nonlinearity, input: input, output: output)
        var expected = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeBytes { x in
          try expected.withUnsafeMutableBytes { y in
            switch (input.type, output.type) {
            case (.int8, .int8):
              try table.apply(x.bindMemory(to: Int8.self), into: y.bindMemory(to: Int8.self))
            case (.uint8, .uint8):
              try table.apply(x.bindMemory(to: UInt8.self), into: y.bindMemory(to: UInt8.self))
            case (.int8, .uint8):
              try table.apply(x.bindMemory(to: Int8.self), into: y.bindMemory(to: UInt8.self))
            default:
              try table.apply(x.bindMemory(to: UInt8.self), into: y.bindMemory(to: Int8.self))
            }
          }
        }
        let byteTable = Int8ByteTable(table)
        var actual = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeBufferPointer { x in
          actual.withUnsafeMutableBufferPointer { y in
            Int8Passes.lookup(
              x.baseAddress!, count: count, table: byteTable.entries, into: y.baseAddress!,
              threads: threads)
          }
        }
        #expect(actual == expected, "\(nonlinearity) \(input.type) -> \(output.type)")
        var inPlace = bytes
        inPlace.withUnsafeMutableBufferPointer { x in
          Int8Passes.lookup(
            x.baseAddress!, count: count, table: byteTable.entries, into: x.baseAddress!,
            threads: threads)
        }
        #expect(inPlace == expected, "in place: \(nonlinearity) \(input.type) -> \(output.type)")
      }
    }
  }

  @Test("global average pool equals ReferenceKernels.globalAveragePool")
  func globalAveragePool() throws {
    let (n, h, w) = (3, 7, 7)
    for (c, pi, po) in [
      (1283, try QuantParams(type: .int8, scale: 0.05), try QuantParams(type: .int8, scale: 0.011)),
      (
        40, try QuantParams(type: .uint8, scale: 0.05, zeroPoint: 100),
        try QuantParams(type: .uint8, scale: 0.02, zeroPoint: 50)
      ),
    ] {
      var random = QuantRandom(seed: UInt64(c))
      let input = (0..<(n * h * w * c)).map { _ in UInt8.random(in: 0...255, using: &random) }
      func check<T: FixedWidthInteger & SIMDScalar>(_: T.Type) throws {
        var expected = [T](repeating: 0, count: n * c)
        var actual = [T](repeating: 0, count: n * c)
        try input.withUnsafeBytes { raw in
          let x = raw.bindMemory(to: T.self)
          try expected.withUnsafeMutableBufferPointer {
            try ReferenceKernels.globalAveragePool(
              input: x, inputParams: pi, batch: n, height: h, width: w, channels: c,
              output: $0, outputParams: po)
          }
          actual.withUnsafeMutableBufferPointer {
            Int8Passes.globalAveragePool(
              x.baseAddress!, inputParams: pi, batch: n, pixels: h * w, channels: c,
              output: $0.baseAddress!, outputParams: po)
          }
        }
        #expect(actual == expected, "\(c) channels of \(pi.type)")
        #expect(Set(expected).count > 10)
      }
      if pi.type == .int8 { try check(Int8.self) } else { try check(UInt8.self) }
    }
  }

  @Test("composed tables equal the two requantisations one after the other")
  func composedTables() throws {
    let a = try QuantParams(type: .int8, scale: 0.05)
    let b = try QuantParams(type: .int8, scale: 0.031)
    let c = try QuantParams(type: .uint8, scale: 0.02, zeroPoint: 100)
    let first = try #require(try Int8ChannelSlices.requantizationTable(from: a, to: b))
    let second = try #require(try Int8ChannelSlices.requantizationTable(from: b, to: c))
    let both = try #require(Int8ChannelSlices.composed(first, second))
    #expect((0..<256).allSatisfy { both[$0] == second[Int(first[$0])] })
    #expect(Int8ChannelSlices.composed(nil, second) == second)
    #expect(Int8ChannelSlices.composed(first, nil) == first)
    #expect(Int8ChannelSlices.composed(nil, nil) == nil)
    // b -> a -> b is not the identity (a is coarser), a -> a is.
    let back = try Int8ChannelSlices.requantizationTable(from: b, to: a)
    #expect(
      Int8ChannelSlices.composed(back, try Int8ChannelSlices.requantizationTable(from: a, to: b))
        != nil)
  }

  @Test("channel slices split across threads equal the one-thread copy")
  func channelSlices() throws {
    let (pixels, c) = (2 * 56 * 56, 40)
    var random = QuantRandom(seed: 5)
    let whole = (0..<(pixels * c)).map { _ in UInt8.random(in: 0...255, using: &random) }
    let table = try #require(
      try Int8ChannelSlices.requantizationTable(
        from: QuantParams(type: .int8, scale: 0.05), to: QuantParams(type: .int8, scale: 0.03)))
    var first = [UInt8](repeating: 0, count: pixels * 10)
    var rest = [UInt8](repeating: 0, count: pixels * 30)
    var expectedFirst = first
    var expectedRest = rest
    whole.withUnsafeBufferPointer { source in
      let s = source.baseAddress!
      first.withUnsafeMutableBufferPointer { f in
        rest.withUnsafeMutableBufferPointer { r in
          Int8ChannelSliceKernel(
            pixels: pixels,
            slices: [
              Int8ChannelSlice(
                source: s, sourceStride: c, sourceOffset: 0, destination: f.baseAddress!,
                destinationStride: 10, destinationOffset: 0, channels: 10, table: nil),
              Int8ChannelSlice(
                source: s, sourceStride: c, sourceOffset: 10, destination: r.baseAddress!,
                destinationStride: 30, destinationOffset: 0, channels: 30, table: table),
            ]
          ).run()
        }
      }
      table.withUnsafeBufferPointer { t in
        expectedFirst.withUnsafeMutableBufferPointer { f in
          Int8ChannelSlices.copy(
            pixels: pixels, channels: 10, from: s, sourceStride: c, sourceOffset: 0,
            to: f.baseAddress!, destinationStride: 10, destinationOffset: 0, table: nil)
        }
        expectedRest.withUnsafeMutableBufferPointer { r in
          Int8ChannelSlices.copy(
            pixels: pixels, channels: 30, from: s, sourceStride: c, sourceOffset: 10,
            to: r.baseAddress!, destinationStride: 30, destinationOffset: 0,
            table: t.baseAddress!)
        }
      }
    }
    #expect(first == expectedFirst)
    #expect(rest == expectedRest)
    #expect(KernelTeam.availableThreads >= 1)
  }
}
