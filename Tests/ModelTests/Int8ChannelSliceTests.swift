import Foundation
import TestSupport
import Testing

@testable import Model

/// Split/Concat on codes (`Int8ChannelSlices`) against the float path they replace:
/// dequantise, slice in float, quantise again.
@Suite("Int8 channel slices")
struct Int8ChannelSliceTests {
  /// Random codes of `type` (every bit pattern is a valid code).
  private func randomCodes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
  }

  /// Dequantises NHWC `codes` of shape [n, c, h, w] into NCHW floats.
  private func floats(_ codes: [UInt8], _ shape: [Int], _ p: QuantParams) throws -> [Float] {
    var values = [Float](repeating: .nan, count: codes.count)
    try codes.withUnsafeBytes { raw in
      try values.withUnsafeMutableBufferPointer {
        try Int8Layout.dequantize(raw.baseAddress!, shape: shape, params: p, into: $0)
      }
    }
    return values
  }

  /// Quantises NCHW floats of `shape` into NHWC codes.
  private func codes(_ values: [Float], _ shape: [Int], _ p: QuantParams) throws -> [UInt8] {
    var result = [UInt8](repeating: 0, count: values.count)
    try values.withUnsafeBufferPointer { v in
      try result.withUnsafeMutableBytes {
        try Int8Layout.quantize(v, shape: shape, params: p, into: $0.baseAddress!)
      }
    }
    return result
  }

  @Test("requantisation table: quantize(dequantize(code)) for every code; nil when identity")
  func table() throws {
    let cases: [(QuantParams, QuantParams)] = [
      (try QuantParams(type: .int8, scale: 0.05), try QuantParams(type: .int8, scale: 0.031)),
      (
        try QuantParams(type: .uint8, scale: 0.02, zeroPoint: 128),
        try QuantParams(type: .int8, scale: 0.04)
      ),
      (
        try QuantParams(type: .int8, scale: 0.01),
        try QuantParams(type: .uint8, scale: 0.5, zeroPoint: 3)
      ),
    ]
    for (input, output) in cases {
      let table = try #require(try Int8ChannelSlices.requantizationTable(from: input, to: output))
      for byte in 0..<256 {
        // Hand-computed: the code's value, then the scheme's rounding and saturation.
        let code = input.type == .int8 ? Int32(Int8(bitPattern: UInt8(byte))) : Int32(byte)
        let x = Float(code - input.zeroPoint) * input.scale
        let q = (x / output.scale).rounded(.toNearestOrEven) + Float(output.zeroPoint)
        let clamped = Int32(min(max(q, Float(output.type.minimum)), Float(output.type.maximum)))
        let expected = output.type == .int8 ? UInt8(bitPattern: Int8(clamped)) : UInt8(clamped)
        #expect(table[byte] == expected, "code \(code)")
      }
    }
    let same = try QuantParams(type: .int8, scale: 0.07)
    #expect(try Int8ChannelSlices.requantizationTable(from: same, to: same) == nil)
  }

  @Test("split and concat of NHWC codes equal the float path, with and without tables")
  func splitAndConcat() throws {
    let (n, c, h, w) = (2, 12, 3, 5)
    let shape = [n, c, h, w]
    let sizes = [3, 9]
    let wholeParams = try QuantParams(type: .int8, scale: 0.05)
    let partParams = [
      try QuantParams(type: .int8, scale: 0.05), try QuantParams(type: .int8, scale: 0.02),
    ]
    let whole = randomCodes(n * c * h * w, seed: 11)
    let wholeFloats = try floats(whole, shape, wholeParams)

    // Split: the float path slices NCHW floats along channels and quantises each part.
    var offset = 0
    for (size, params) in zip(sizes, partParams) {
      let partShape = [n, size, h, w]
      var sliced = [Float]()
      for image in 0..<n {
        let start = (image * c + offset) * h * w
        sliced += wholeFloats[start..<(start + size * h * w)]
      }
      let expected = try codes(sliced, partShape, params)
      var actual = [UInt8](repeating: 0, count: expected.count)
      let table = try Int8ChannelSlices.requantizationTable(from: wholeParams, to: params)
      whole.withUnsafeBufferPointer { source in
        actual.withUnsafeMutableBufferPointer { destination in
          table.withUnsafeBufferPointerIfPresent { t in
            Int8ChannelSlices.copy(
              pixels: n * h * w, channels: size, from: source.baseAddress!, sourceStride: c,
              sourceOffset: offset, to: destination.baseAddress!, destinationStride: size,
              destinationOffset: 0, table: t)
          }
        }
      }
      #expect(actual == expected, "split part at channel \(offset)")
      offset += size
    }

    // Concat: parts with their own parameters into the whole's.
    let parts = [randomCodes(n * 3 * h * w, seed: 12), randomCodes(n * 9 * h * w, seed: 13)]
    var joined = [Float](repeating: 0, count: n * c * h * w)
    offset = 0
    for (part, (size, params)) in zip(parts, zip(sizes, partParams)) {
      let values = try floats(part, [n, size, h, w], params)
      for image in 0..<n {
        for i in 0..<(size * h * w) {
          joined[(image * c + offset) * h * w + i] = values[image * size * h * w + i]
        }
      }
      offset += size
    }
    let concatParams = try QuantParams(type: .int8, scale: 0.03)
    let expected = try codes(joined, shape, concatParams)
    var actual = [UInt8](repeating: 0, count: expected.count)
    offset = 0
    var slices: [Int8ChannelSlice] = []
    let stacked = parts[0] + parts[1]
    try stacked.withUnsafeBufferPointer { source in
      try actual.withUnsafeMutableBufferPointer { destination in
        var start = 0
        for (size, params) in zip(sizes, partParams) {
          slices.append(
            Int8ChannelSlice(
              source: source.baseAddress! + start, sourceStride: size, sourceOffset: 0,
              destination: destination.baseAddress!, destinationStride: c,
              destinationOffset: offset, channels: size,
              table: try Int8ChannelSlices.requantizationTable(from: params, to: concatParams)))
          offset += size
          start += n * size * h * w
        }
        Int8ChannelSliceKernel(pixels: n * h * w, slices: slices).run()
      }
    }
    #expect(actual == expected)
  }
}

extension Optional where Wrapped == [UInt8] {
  /// Calls `body` with a pointer to the array's bytes, or nil when there is no array.
  fileprivate func withUnsafeBufferPointerIfPresent<R>(_ body: (UnsafePointer<UInt8>?) -> R) -> R {
    guard let self else { return body(nil) }
    return self.withUnsafeBufferPointer { body($0.baseAddress) }
  }
}

/// The whole engine: Split/Concat on codes give the same logits, bit for bit, as the same
/// nodes run in float between dequantise and quantise.
@Suite(
  "Int8 engine: Split/Concat on codes",
  .requiresPython)
struct Int8ChannelSliceEngineTests {
  @Test("fasternet-like model: Split/Concat as slices equal the float fallback exactly")
  func fasterNetSlicesMatchFallback() throws {
    let graph = try int8TestModel("fasternet")
    let batch = 2
    let calibration = try Int8Engine.calibrate(
      graph: graph, batchSize: batch, imageCount: 4, settings: Int8Settings(method: .max),
      nextBatch: seededBatches(2, images: batch, seed: 40))
    let engine = try Int8Engine(graph: graph, batchSize: batch, calibration: calibration)
    let slicing = engine.graph.nodes.filter {
      switch $0.op {
      case .split, .concat: true
      default: false
      }
    }.map(\.name)
    #expect(slicing.count == 8)
    #expect(slicing.allSatisfy { engine.quantizedNodes.contains($0) })
    #expect(engine.floatFallbackNodes.isEmpty, "\(engine.floatFallbackNodes)")
    let fallback = try Int8Engine(
      graph: graph, batchSize: batch, calibration: calibration,
      settings: Int8Settings(method: .max, floatNodes: Set(slicing)))
    #expect(Set(fallback.floatFallbackNodes) == Set(slicing))

    let input = randomValues(batch * 3 * 32 * 32, seed: 99, in: -2...2)
    let sliced = try runEngine(engine, input)
    let finite = sliced.allSatisfy { $0.isFinite }
    #expect(finite)
    #expect(sliced == (try runEngine(fallback, input)))
  }
}
