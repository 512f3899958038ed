import Foundation
import Testing

@testable import Model

/// The oneDNN int8 kernels of `Int8Engine` against the scalar oracle `ReferenceKernels`, bit
/// for bit, on random codes.
@Suite("Int8 kernels vs ReferenceKernels")
struct Int8KernelTests {
  struct ConvCase: CustomStringConvertible, Sendable {
    var label: String
    var geometry: Conv2DGeometry
    var inputType: QuantizedType
    var inputZeroPoint: Int32
    var outputType: QuantizedType
    var outputZeroPoint: Int32
    var activation: FusedActivation
    var residual: Bool
    var description: String { label }

    /// A case; the codes default to int8 with zero points 0, without a residual sum.
    init(
      label: String, geometry: Conv2DGeometry, inputType: QuantizedType = .int8,
      inputZeroPoint: Int32 = 0, outputType: QuantizedType = .int8, outputZeroPoint: Int32 = 0,
      activation: FusedActivation, residual: Bool = false
    ) {
      self.label = label
      self.geometry = geometry
      self.inputType = inputType
      self.inputZeroPoint = inputZeroPoint
      self.outputType = outputType
      self.outputZeroPoint = outputZeroPoint
      self.activation = activation
      self.residual = residual
    }
  }

  static let convCases: [ConvCase] = [
    ConvCase(
      label: "3x3 pad 1, s8 -> s8, no activation",
      geometry: Conv2DGeometry(
        batch: 2, inputHeight: 9, inputWidth: 7, inputChannels: 16, outputChannels: 24,
        kernelHeight: 3, kernelWidth: 3, pads: (1, 1, 1, 1)),
      activation: .none),
    ConvCase(
      label: "1x1, s8 -> s8, ReLU6, residual sum",
      geometry: Conv2DGeometry(
        batch: 2, inputHeight: 6, inputWidth: 5, inputChannels: 40, outputChannels: 32,
        kernelHeight: 1, kernelWidth: 1),
      activation: .relu6, residual: true),
    ConvCase(
      label: "depthwise 3x3 stride 2, s8 -> s8, ReLU6",
      geometry: Conv2DGeometry(
        batch: 2, inputHeight: 11, inputWidth: 10, inputChannels: 32, outputChannels: 32,
        kernelHeight: 3, kernelWidth: 3, strides: (2, 2), pads: (0, 0, 1, 1), groups: 32),
      activation: .relu6),
    ConvCase(
      label: "depthwise 5x5 stride 1 pad 2, s8 -> s8, ReLU",
      geometry: Conv2DGeometry(
        batch: 1, inputHeight: 8, inputWidth: 8, inputChannels: 48, outputChannels: 48,
        kernelHeight: 5, kernelWidth: 5, pads: (2, 2, 2, 2), groups: 48),
      activation: .relu),
    ConvCase(
      label: "3x3 stride 2 stem (3 channels), s8 -> s8, ReLU6",
      geometry: Conv2DGeometry(
        batch: 2, inputHeight: 15, inputWidth: 15, inputChannels: 3, outputChannels: 32,
        kernelHeight: 3, kernelWidth: 3, strides: (2, 2), pads: (0, 0, 1, 1)),
      activation: .relu6),
    ConvCase(
      label: "3x3 pad 1, u8 zp 37 -> u8 zp 12 (asymmetric), ReLU",
      geometry: Conv2DGeometry(
        batch: 1, inputHeight: 7, inputWidth: 6, inputChannels: 8, outputChannels: 16,
        kernelHeight: 3, kernelWidth: 3, pads: (1, 1, 1, 1)),
      inputType: .uint8, inputZeroPoint: 37, outputType: .uint8, outputZeroPoint: 12,
      activation: .relu, residual: false),
  ]

  @Test("oneDNN int8 convolution reproduces ReferenceKernels.conv2d", arguments: convCases)
  func convolution(_ c: ConvCase) throws {
    var random = QuantRandom(seed: UInt64(c.label.utf8.count) &* 7919)
    let g = c.geometry
    let inputCount = g.batch * g.inputHeight * g.inputWidth * g.inputChannels
    let outputCount = g.batch * g.outputHeight * g.outputWidth * g.outputChannels
    let (weights, weightScales, bias) = randomConvolutionParameters(g, using: &random)
    let inputScale: Float = 0.05
    let output = try QuantParams(
      type: c.outputType, scale: c.residual ? 0.9 : 1.3, zeroPoint: c.outputZeroPoint)
    let residualParams = c.residual ? try QuantParams(type: .int8, scale: 0.37) : nil
    let r = try Requantization(
      inputScale: inputScale, weightScales: weightScales, output: output,
      activation: c.activation, residual: residualParams)
    let engine = try DNNLEngine(threads: 1)
    let kernel = try Int8ConvolutionKernel(
      engine: engine, geometry: g, inputType: c.inputType, inputZeroPoint: c.inputZeroPoint,
      weights: weights, bias: bias, requantization: r, label: c.label)
    #expect(!DNNLPrimitive.isReference(kernel.primitive.implementation))

    func run<In: FixedWidthInteger, Out: FixedWidthInteger>(_: In.Type, _: Out.Type) throws -> (
      [Out], [Out]
    ) {
      let input = (0..<inputCount).map { _ in In.random(in: In.min...In.max, using: &random) }
      let residual = (0..<outputCount).map { _ in
        Out.random(in: Out.min...Out.max, using: &random)
      }
      var expected = [Out](repeating: 0, count: outputCount)
      try referenceConv2d(
        input: input, inputZeroPoint: c.inputZeroPoint, weights: weights, bias: bias,
        geometry: g, requantization: r, residual: c.residual ? residual : nil, output: &expected)
      // The sum post-op reads the residual from the destination buffer.
      let actual = try runKernel(engine, input: input, output: residual, bind: kernel.bind)
      return (actual, expected)
    }
    let mismatches: Int
    let total: Int
    var saturated = 0
    switch (c.inputType, c.outputType) {
    case (.int8, .int8):
      let (actual, expected) = try run(Int8.self, Int8.self)
      mismatches = zip(actual, expected).filter { $0 != $1 }.count
      total = actual.count
      saturated = expected.filter { $0 == 127 || $0 == -128 }.count
    case (.uint8, .uint8):
      let (actual, expected) = try run(UInt8.self, UInt8.self)
      mismatches = zip(actual, expected).filter { $0 != $1 }.count
      total = actual.count
      saturated = expected.filter { $0 == 255 || $0 == 0 }.count
    default:
      Issue.record("no case for \(c.inputType) -> \(c.outputType)")
      return
    }
    #expect(mismatches == 0, "\(mismatches) of \(total) codes differ")
    // The case must exercise the interior of the range, not only saturation.
    #expect(saturated < total / 2, "\(saturated) of \(total) saturated")
  }

  @Test("oneDNN int8 inner product reproduces ReferenceKernels.gemm")
  func innerProduct() throws {
    var random = QuantRandom(seed: 4242)
    let (m, n, k) = (5, 37, 300)
    let a = (0..<(m * k)).map { _ in Int8.random(in: -128...127, using: &random) }
    let b = (0..<(n * k)).map { _ in Int8.random(in: -127...127, using: &random) }
    let bias = (0..<n).map { _ in Int32.random(in: -20000...20000, using: &random) }
    let weightScales = (0..<n).map { _ in Float.random(in: 0.001...0.01, using: &random) }
    let r = try Requantization(
      inputScale: 0.04, weightScales: weightScales, output: QuantParams(type: .int8, scale: 2.1))
    var expected = [Int8](repeating: 0, count: m * n)
    try a.withUnsafeBufferPointer { x in
      try b.withUnsafeBufferPointer { w in
        try bias.withUnsafeBufferPointer { bb in
          try expected.withUnsafeMutableBufferPointer { y in
            try ReferenceKernels.gemm(
              a: x, aZeroPoint: 0, b: w, bias: bb, m: m, n: n, k: k, requantization: r, output: y)
          }
        }
      }
    }
    let engine = try DNNLEngine(threads: 1)
    let kernel = try Int8InnerProductKernel(
      engine: engine, m: m, n: n, k: k, inputType: .int8, inputZeroPoint: 0, weights: b,
      bias: bias, requantization: r, label: "fc")
    let actual = try runKernel(
      engine, input: a, output: [Int8](repeating: 0, count: m * n), bind: kernel.bind)
    #expect(actual == expected)
    #expect(Set(expected).count > 20)

    // Float output: m·(acc + bias) unrounded, the classifier head's dequantised logits.
    let logitRequantization = try Requantization(
      inputScale: 0.04, weightScales: weightScales, output: QuantParams(type: .int32, scale: 1))
    let logits = try Int8InnerProductKernel(
      engine: engine, m: m, n: n, k: k, inputType: .int8, inputZeroPoint: 0, weights: b,
      bias: bias, requantization: logitRequantization, floatOutput: true, label: "logits")
    let floats = try runKernel(
      engine, input: a, output: [Float](repeating: 0, count: m * n), bind: logits.bind)
    for i in 0..<m {
      for j in 0..<n {
        var acc: Int32 = 0
        for p in 0..<k { acc += Int32(a[i * k + p]) * Int32(b[j * k + p]) }
        let want = (Float(acc) + Float(bias[j])) * logitRequantization.multipliers[j]
        #expect(floats[i * n + j] == want, "logit [\(i), \(j)]")
      }
    }
  }

  @Test("oneDNN int8 max pooling equals the maximum of codes (padding ignored)")
  func maxPool() throws {
    var random = QuantRandom(seed: 99)
    let (n, c, h, w) = (2, 24, 9, 9)
    let (oh, ow) = (5, 5)  // 3x3, stride 2, pad 1
    let input = (0..<(n * h * w * c)).map { _ in Int8.random(in: -128...127, using: &random) }
    let engine = try DNNLEngine(threads: 1)
    let kernel = try Int8MaxPoolKernel(
      engine: engine, type: .int8, input: [n, c, h, w], output: [n, c, oh, ow], kernel: [3, 3],
      strides: [2, 2], paddingLeft: [1, 1], paddingRight: [1, 1], dilations: [1, 1],
      label: "pool")
    let actual = try runKernel(
      engine, input: input, output: [Int8](repeating: 0, count: n * oh * ow * c),
      bind: kernel.bind)
    var mismatches = 0
    for b in 0..<n {
      for y in 0..<oh {
        for x in 0..<ow {
          for ch in 0..<c {
            var best = Int8.min
            for ky in 0..<3 {
              for kx in 0..<3 {
                let iy = y * 2 - 1 + ky
                let ix = x * 2 - 1 + kx
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                best = max(best, input[((b * h + iy) * w + ix) * c + ch])
              }
            }
            if actual[((b * oh + y) * ow + x) * c + ch] != best { mismatches += 1 }
          }
        }
      }
    }
    #expect(mismatches == 0)
  }
}
