import Foundation
import Testing

@testable import Model

/// `Int8Lowering` hands oneDNN the int8 codes of a ReLU-clamped convolution's output (all in
/// 0...127, zero point 0) as uint8, which avoids the signed-source shift and compensation of
/// the VNNI kernels. The bytes and integers are the same, so the outputs must be too: the uint8
/// kernel against the int8 kernel and `ReferenceKernels.conv2d`, byte for byte.
@Suite("Int8 convolution: non-negative int8 codes read as uint8")
struct Int8UnsignedSourceTests {
  static let geometries: [(String, Conv2DGeometry, FusedActivation, Bool)] = [
    (
      "depthwise 3x3 pad 1, ReLU6",
      Conv2DGeometry(
        batch: 1, inputHeight: 14, inputWidth: 14, inputChannels: 144, outputChannels: 144,
        kernelHeight: 3, kernelWidth: 3, pads: (1, 1, 1, 1), groups: 144), .relu6, false
    ),
    (
      "depthwise 5x5 stride 2, ReLU6",
      Conv2DGeometry(
        batch: 2, inputHeight: 15, inputWidth: 15, inputChannels: 48, outputChannels: 48,
        kernelHeight: 5, kernelWidth: 5, strides: (2, 2), pads: (1, 1, 2, 2), groups: 48),
      .relu6, false
    ),
    (
      "1x1 projection, no clamp",
      Conv2DGeometry(
        batch: 1, inputHeight: 7, inputWidth: 9, inputChannels: 96, outputChannels: 40,
        kernelHeight: 1, kernelWidth: 1), .none, false
    ),
    (
      "1x1 projection, residual sum",
      Conv2DGeometry(
        batch: 2, inputHeight: 6, inputWidth: 5, inputChannels: 64, outputChannels: 24,
        kernelHeight: 1, kernelWidth: 1), .none, true
    ),
    (
      "3x3 dense pad 1, ReLU",
      Conv2DGeometry(
        batch: 1, inputHeight: 9, inputWidth: 8, inputChannels: 16, outputChannels: 32,
        kernelHeight: 3, kernelWidth: 3, pads: (1, 1, 1, 1)), .relu, false
    ),
  ]

  /// A convolution's random operands and requantisation, and `ReferenceKernels`' output codes
  /// for them (the input's first two codes are the range's ends).
  private struct Case {
    var weights: [Int8]
    var bias: [Int32]?
    var r: Requantization
    var input: [Int8]
    var old: [Int8]
    var expected: [Int8]

    init(
      _ g: Conv2DGeometry, _ activation: FusedActivation, residual: Bool, outputScale: Float,
      inputs: ClosedRange<Int8>, bias hasBias: Bool = true, using random: inout QuantRandom
    ) throws {
      let inputCount = g.batch * g.inputHeight * g.inputWidth * g.inputChannels
      let outputCount = g.batch * g.outputHeight * g.outputWidth * g.outputChannels
      let (weights, weightScales, bias) = randomConvolutionParameters(g, using: &random)
      self.weights = weights
      self.bias = hasBias ? bias : nil
      r = try Requantization(
        inputScale: 0.05, weightScales: weightScales,
        output: try QuantParams(type: .int8, scale: outputScale), activation: activation,
        residual: residual ? try QuantParams(type: .int8, scale: 0.37) : nil)
      input = (0..<inputCount).map { _ in Int8.random(in: inputs, using: &random) }
      (input[0], input[1]) = (inputs.lowerBound, inputs.upperBound)
      old = (0..<outputCount).map { _ in Int8.random(in: -128...127, using: &random) }
      expected = [Int8](repeating: 0, count: outputCount)
      try referenceConv2d(
        input: input, inputZeroPoint: 0, weights: weights, bias: self.bias, geometry: g,
        requantization: r, residual: residual ? old : nil, output: &expected)
    }
  }

  @Test("uint8 kernel == int8 kernel == ReferenceKernels on codes 0...127")
  func sameCodes() throws {
    var random = QuantRandom(seed: 0x0_5157)
    for (label, g, activation, residual) in Self.geometries {
      // ReLU6 clamps at 6: a scale of 6/127 keeps the whole code range in play.
      let c = try Case(
        g, activation, residual: residual,
        outputScale: activation == .relu6 ? 6 / 127 : (residual ? 0.9 : 0.6), inputs: 0...127,
        using: &random)
      let (weights, bias, r, input, old, expected) = (
        c.weights, c.bias, c.r, c.input, c.old, c.expected
      )
      let engine = try DNNLEngine(threads: 1)
      var results: [[Int8]] = []
      for type in [QuantizedType.int8, .uint8] {
        let kernel = try Int8ConvolutionKernel(
          engine: engine, geometry: g, inputType: type, inputZeroPoint: 0, weights: weights,
          bias: bias, requantization: r, label: label)
        #expect(!DNNLPrimitive.isReference(kernel.primitive.implementation), "\(label)")
        results.append(try runKernel(engine, input: input, output: old, bind: kernel.bind))
      }
      let signedDiffer = zip(results[0], expected).filter { $0 != $1 }.count
      let unsignedDiffer = zip(results[1], expected).filter { $0 != $1 }.count
      #expect(signedDiffer == 0, "\(label): int8 source, \(signedDiffer) codes differ")
      #expect(unsignedDiffer == 0, "\(label): uint8 source, \(unsignedDiffer) codes differ")
      // Not a vacuous case: the outputs spread over many codes.
      #expect(Set(expected).count > 20, "\(label)")
    }
  }

  static let unpadded: [(String, Conv2DGeometry, FusedActivation, Bool, Bool)] = [
    (
      "1x1 expansion of a linear bottleneck, ReLU6",
      Conv2DGeometry(
        batch: 1, inputHeight: 7, inputWidth: 7, inputChannels: 40, outputChannels: 240,
        kernelHeight: 1, kernelWidth: 1), .relu6, false, true
    ),
    (
      "1x1, residual sum, no bias",
      Conv2DGeometry(
        batch: 2, inputHeight: 5, inputWidth: 6, inputChannels: 72, outputChannels: 48,
        kernelHeight: 1, kernelWidth: 1), .none, true, false
    ),
    (
      "2x2 stride 2 (FasterNet's downsampling)",
      Conv2DGeometry(
        batch: 1, inputHeight: 8, inputWidth: 10, inputChannels: 24, outputChannels: 48,
        kernelHeight: 2, kernelWidth: 2, strides: (2, 2)), .none, false, true
    ),
    (
      "grouped 1x1, ReLU",
      Conv2DGeometry(
        batch: 1, inputHeight: 4, inputWidth: 4, inputChannels: 32, outputChannels: 64,
        kernelHeight: 1, kernelWidth: 1, groups: 4), .relu, false, true
    ),
  ]

  @Test("signed codes shifted to uint8 (+128, bias − 128·Σw) == int8 kernel == ReferenceKernels")
  func shiftedSignedCodes() throws {
    var random = QuantRandom(seed: 0x5_1D7)
    var compared = 0
    for (label, g, activation, residual, hasBias) in Self.unpadded {
      // The whole signed range, both extremes included.
      let c = try Case(
        g, activation, residual: residual,
        outputScale: activation == .relu6 ? 6 / 127 : (residual ? 1.6 : 1.1),
        inputs: -128...127, bias: hasBias, using: &random)
      let (weights, bias, r, input, old, expected) = (
        c.weights, c.bias, c.r, c.input, c.old, c.expected
      )
      let engine = try DNNLEngine(threads: 1)
      let signed = try Int8ConvolutionKernel(
        engine: engine, geometry: g, inputType: .int8, inputZeroPoint: 0, weights: weights,
        bias: bias, requantization: r, label: label)
      let unsigned = try Int8ConvolutionKernel(
        engine: engine, geometry: g, inputType: .uint8, inputZeroPoint: 0, weights: weights,
        bias: biasFolding(
          sourceZeroPoint: 128, into: bias, weights: weights, outputs: g.outputChannels),
        requantization: r, label: label)
      guard unsigned.primitive.implementation.contains("vnni") else {
        // The engine keeps the signed source without VNNI (16-bit pairs would saturate).
        continue
      }
      let fromSigned = try runKernel(engine, input: input, output: old, bind: signed.bind)
      let fromShifted = try input.withUnsafeBytes { codes in
        let shift = Int8SignShift(source: codes.baseAddress!, count: codes.count)
        shift.run()
        let shifted = Array(
          UnsafeBufferPointer(
            start: shift.buffer.assumingMemoryBound(to: Int8.self), count: codes.count))
        return try runKernel(engine, input: shifted, output: old, bind: unsigned.bind)
      }
      #expect(fromSigned == expected, "\(label): int8 source")
      #expect(fromShifted == expected, "\(label): shifted uint8 source")
      #expect(Set(expected).count > 20, "\(label)")
      compared += 1
    }
    // Every case ran where the CPU has VNNI (as /proc/cpuinfo says, independently of oneDNN).
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    if cpuinfo.contains(" avx512_vnni") { #expect(compared == Self.unpadded.count) }
  }

  @Test("the shift flips every byte's sign bit, tail included; the folded bias by hand")
  func shiftAndBias() {
    let codes: [Int8] = [-128, -1, 0, 1, 127, 5, -6, 64, -64, 100, -100]  // 11: a word and a tail
    let shifted = codes.withUnsafeBytes { bytes in
      let shift = Int8SignShift(source: bytes.baseAddress!, count: bytes.count)
      shift.run()
      return Array(
        UnsafeBufferPointer(
          start: shift.buffer.assumingMemoryBound(to: UInt8.self), count: bytes.count))
    }
    #expect(shifted == codes.map { UInt8(Int($0) + 128) })
    // Two output channels of three weights: 7 − 128·(1 + 2 − 3) = 7, −2 − 128·(−128 + 127 + 0) = 126.
    #expect(
      biasFolding(
        sourceZeroPoint: 128, into: [7, -2], weights: [1, 2, -3, -128, 127, 0], outputs: 2)
        == [7, 126])
    #expect(
      biasFolding(sourceZeroPoint: 128, into: nil, weights: [1, 2, -3, -128, 127, 0], outputs: 2)
        == [0, 128])
  }
}
