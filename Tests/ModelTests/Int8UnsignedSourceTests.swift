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

  @Test("uint8 kernel == int8 kernel == ReferenceKernels on codes 0...127")
  func sameCodes() throws {
    var random = QuantRandom(seed: 0x0_5157)
    for (label, g, activation, residual) in Self.geometries {
      let inputCount = g.batch * g.inputHeight * g.inputWidth * g.inputChannels
      let outputCount = g.batch * g.outputHeight * g.outputWidth * g.outputChannels
      let (weights, weightScales, bias) = randomConvolutionParameters(g, using: &random)
      // ReLU6 clamps at 6: a scale of 6/127 keeps the whole code range in play.
      let output = try QuantParams(
        type: .int8, scale: activation == .relu6 ? 6 / 127 : (residual ? 0.9 : 0.6))
      let r = try Requantization(
        inputScale: 0.05, weightScales: weightScales, output: output, activation: activation,
        residual: residual ? try QuantParams(type: .int8, scale: 0.37) : nil)
      let input = (0..<inputCount).map { _ in Int8.random(in: 0...127, using: &random) }
      let old = (0..<outputCount).map { _ in Int8.random(in: -128...127, using: &random) }
      var expected = [Int8](repeating: 0, count: outputCount)
      try referenceConv2d(
        input: input, inputZeroPoint: 0, weights: weights, bias: bias, geometry: g,
        requantization: r, residual: residual ? old : nil, output: &expected)
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
}
