import Foundation
import TestSupport
import Testing

@testable import Model

@Suite("Quantization reference kernels")
struct QuantKernelTests {
  // MARK: Requantisation, hand-computed

  @Test("requantisation rounds ties to even and saturates")
  func requantizationRounding() throws {
    // s_in * s_w / s_out = 0.5 exactly, so acc/2 lands on .5 ties for odd acc.
    let r = try Requantization(
      inputScale: 0.5, weightScales: [1], output: QuantParams(type: .int8, scale: 1))
    #expect(r.multipliers == [0.5])
    let cases: [(Int32, Int32)] = [
      (1, 0), (3, 2), (5, 2), (7, 4), (-1, 0), (-3, -2), (-5, -2), (-7, -4), (254, 127),
      (255, 127), (256, 127), (100_000, 127), (-256, -128), (-257, -128), (-100_000, -128),
    ]
    for (acc, expected) in cases {
      #expect(r.requantize(acc, bias: 0, channel: 0) == expected, "acc \(acc)")
    }
    // Bias is added in accumulator units before the multiplier: (3 + 2) * 0.5 = 2.5 -> 2.
    #expect(r.requantize(3, bias: 2, channel: 0) == 2)
  }

  @Test("requantisation adds the zero point in float32 before rounding, as oneDNN does")
  func zeroPointBeforeRounding() throws {
    // y = 1.4999999 (the float just below 1.5); y + 100 rounds in float32 to 101.5 -> 102,
    // whereas round(y) + 100 would give 101. This pins the documented order.
    let below = Float(1.5).nextDown
    let r = try Requantization(
      inputScale: below, weightScales: [1],
      output: QuantParams(type: .uint8, scale: 1, zeroPoint: 100))
    #expect(r.requantize(1, bias: 0, channel: 0) == 102)
    let r0 = try Requantization(
      inputScale: below, weightScales: [1], output: QuantParams(type: .int8, scale: 1))
    #expect(r0.requantize(1, bias: 0, channel: 0) == 1)
  }

  @Test("fused ReLU, ReLU6 and residual sum")
  func fusedPostOps() throws {
    let out = try QuantParams(type: .int8, scale: 0.1)
    let relu = try Requantization(
      inputScale: 0.1, weightScales: [1], output: out, activation: .relu)
    #expect(relu.requantize(-30, bias: 0, channel: 0) == 0)
    #expect(relu.requantize(30, bias: 0, channel: 0) == 30)
    let relu6 = try Requantization(
      inputScale: 0.1, weightScales: [1], output: out, activation: .relu6)
    #expect(relu6.requantize(100, bias: 0, channel: 0) == 60)  // 6 / 0.1
    // Residual at scale 0.2: y = acc + (res - 0) * 2, then ReLU.
    let sum = try Requantization(
      inputScale: 0.1, weightScales: [1], output: out, activation: .relu,
      residual: QuantParams(type: .int8, scale: 0.2))
    #expect(sum.requantize(10, bias: 0, channel: 0, residual: 5) == 20)
    #expect(sum.requantize(10, bias: 0, channel: 0, residual: -20) == 0)
    #expect(sum.requantize(100, bias: 0, channel: 0, residual: 100) == 127)
  }

  @Test(
    "the residual term is one fused multiply-add, bit-exact against numpy on tie cases",
    .requiresPython)
  func residualIsFused() throws {
    let residualParams = try QuantParams(type: .int8, scale: 0.7310001)
    let residualScale = residualParams.scale  // s_res / s_out with s_out = 1
    // (scale, x, d) where rounding the product separately would change the output code.
    // Such ties are rare (about one per 600k pairs), so scan many multipliers.
    var scales: [Float] = []
    var inputs: [Int8] = []
    var residuals: [UInt8] = []
    for step in 0..<200 {
      let m = 0.001 + Float(step) * 0.000257
      for x in Int8.min...Int8.max {
        let y = Float(x) * m
        for d in UInt8.min...UInt8.max {
          let fused = y.addingProduct(Float(d), residualScale).rounded(.toNearestOrEven)
          let separate = (y + Float(d) * residualScale).rounded(.toNearestOrEven)
          if fused != separate, fused >= 0, fused <= 255 {
            scales.append(m)
            inputs.append(x)
            residuals.append(d)
          }
        }
      }
    }
    #expect(scales.count >= 10)
    // One depthwise channel per case: m[oc] = (1 * scale) / 1 = scale exactly.
    let n = scales.count
    let g = Conv2DGeometry(
      batch: 1, inputHeight: 1, inputWidth: 1, inputChannels: n, outputChannels: n,
      kernelHeight: 1, kernelWidth: 1, groups: n)
    let r = try Requantization(
      inputScale: 1, weightScales: scales, output: QuantParams(type: .uint8, scale: 1),
      residual: residualParams)
    let weights = [Int8](repeating: 1, count: n)
    var result = [UInt8](repeating: 0, count: n)
    try inputs.withUnsafeBufferPointer { x in
      try weights.withUnsafeBufferPointer { w in
        try residuals.withUnsafeBufferPointer { res in
          try result.withUnsafeMutableBufferPointer { out in
            try ReferenceKernels.conv2d(
              input: x, inputZeroPoint: 0, weights: w, bias: nil, geometry: g,
              requantization: r, residual: res, output: out)
          }
        }
      }
    }
    let expected = try quantReferenceCodes([
      "kind": "conv2d", "batch": 1, "height": 1, "width": 1, "inputChannels": n,
      "outputChannels": n, "kernelHeight": 1, "kernelWidth": 1, "groups": n, "strides": [1, 1],
      "pads": [0, 0, 0, 0], "dilations": [1, 1], "input": inputs.map(Int.init),
      "inputZeroPoint": 0, "weights": weights.map(Int.init), "inputScale": 1.0,
      "weightScales": scales.map(Double.init), "outputScale": 1.0, "outputZeroPoint": 0,
      "outputType": "uint8", "residual": residuals.map(Int.init),
      "residualScale": Double(residualScale), "residualZeroPoint": 0,
      "clip": [NSNull(), NSNull()],
    ])
    #expect(result.map(Int.init) == expected)
  }

  @Test("quantize follows QuantizeLinear: x / scale, ties to even, zero point, saturation")
  func quantizeLinear() throws {
    let values: [Float] = [
      0.5, 1.5, 2.5, -0.5, -1.5, 1000, -1000, .infinity, -.infinity, .nan, 0.26,
    ]
    var codes = [Int8](repeating: 0, count: values.count)
    let nan = try values.withUnsafeBufferPointer { v in
      try codes.withUnsafeMutableBufferPointer { c in
        try Quantizer.quantize(v, into: c, scale: 1, zeroPoint: 0)
      }
    }
    #expect(codes == [0, 2, 2, 0, -2, 127, -128, 127, -128, 0, 0])
    #expect(nan == 1)
    var u = [UInt8](repeating: 0, count: 3)
    try [Float(-0.5), 0.5, 1.0].withUnsafeBufferPointer { v in
      try u.withUnsafeMutableBufferPointer { c in
        try Quantizer.quantize(v, into: c, scale: 0.5, zeroPoint: 128)
      }
    }
    #expect(u == [127, 129, 130])
    // A zero point shifts the code after rounding: 2.5 -> 2 (even) + (-5) = -3; saturation
    // applies to the shifted code; NaN becomes the zero point.
    var shifted = [Int8](repeating: 0, count: 5)
    try [Float(2.5), 1000, -1000, -123.5, .nan].withUnsafeBufferPointer { v in
      try shifted.withUnsafeMutableBufferPointer { c in
        try Quantizer.quantize(v, into: c, scale: 1, zeroPoint: -5)
      }
    }
    #expect(shifted == [-3, 127, -128, -128, -5])
    var wide = [Int16](repeating: 0, count: 2)
    try [Float(40000), -3.5].withUnsafeBufferPointer { v in
      try wide.withUnsafeMutableBufferPointer { c in
        try Quantizer.quantize(v, into: c, scale: 1, zeroPoint: 0)
      }
    }
    #expect(wide == [32767, -4])
    var back = [Float](repeating: 0, count: 3)
    try u.withUnsafeBufferPointer { c in
      try back.withUnsafeMutableBufferPointer { v in
        try Quantizer.dequantize(c, into: v, scale: 0.5, zeroPoint: 128)
      }
    }
    #expect(back == [-0.5, 0.5, 1.0])
  }

  @Test("parameters: symmetric, asymmetric (onnxruntime), weights per channel, bias")
  func parameters() throws {
    let s = try QuantParams.symmetric(threshold: 12.7)
    #expect(s.scale == Float(12.7) / 127 && s.zeroPoint == 0 && s.type == .int8)
    #expect(try QuantParams.symmetric(threshold: 0).scale == 1)
    #expect(try QuantParams.symmetric(threshold: 32767, type: .int16).scale == 1)
    #expect(throws: QuantizationError.self) { try QuantParams.symmetric(threshold: .nan) }
    // [-1, 3] -> scale 4/255, zp = round(0 - (-1)/scale) = round(63.75) = 64.
    let a = try QuantParams.asymmetric(minimum: -1, maximum: 3)
    #expect(a.scale == Float(4.0 / 255) && a.zeroPoint == 64)
    // Range widened to include 0: [2, 5] behaves as [0, 5].
    #expect(try QuantParams.asymmetric(minimum: 2, maximum: 5).zeroPoint == 0)
    #expect(try QuantParams.asymmetric(minimum: 0, maximum: 0).scale == 1)
    #expect(throws: QuantizationError.self) {
      try QuantParams(type: .int8, scale: 1, zeroPoint: 200)
    }
    #expect(throws: QuantizationError.self) { try QuantParams(type: .int8, scale: 0) }

    let w: [Float] = [0.5, -1.27, 0.01, 0, 0, 0, 2.54, 1.27, -2.54]
    let (codes, params) = try Quantizer.quantizeWeights(
      w, outputChannels: 3, granularity: .perChannel)
    #expect(params.scales == [Float(1.27) / 127, 1, Float(2.54) / 127])
    #expect(params.axis == 0)
    #expect(codes == [50, -127, 1, 0, 0, 0, 127, 64, -127])
    let (tensorCodes, tensorParams) = try Quantizer.quantizeWeights(
      w, outputChannels: 3, granularity: .perTensor)
    #expect(tensorParams.isPerTensor && tensorParams.scale == Float(2.54) / 127)
    #expect(tensorCodes[0] == 25 && tensorCodes[1] == -64)
    #expect(throws: QuantizationError.self) {
      try Quantizer.quantizeWeights(w, outputChannels: 2, granularity: .perChannel)
    }
    // bias 1.0 at s_in 0.1, s_w 0.01 -> round(1 / 0.001) = 1000.
    #expect(
      try Quantizer.quantizeBias([1, -0.00025], inputScale: 0.1, weightScales: [0.01]) == [1000, 0])
  }

  @Test(
    "asymmetric parameters equal onnxruntime's compute_scale_zp",
    .requiresPython)
  func asymmetricMatchesOnnxruntime() throws {
    let ranges: [(Float, Float, QuantizedType)] = [
      (-1, 1, .int8), (-1, 3, .uint8), (-0.37, 5.2, .uint8), (0.3, 2, .int8),
      (-6.1, 0.02, .uint8), (-2.5, 2.5, .uint8), (-1e-3, 7.77, .int8), (0, 0, .uint8),
    ]
    let output = try PythonReference.run(
      code: """
        import sys, json, numpy as np
        from onnxruntime.quantization.quant_utils import compute_scale_zp
        out = []
        for lo, hi, t in json.loads(sys.argv[1]):
            d = np.dtype(t); i = np.iinfo(d)
            zp, s = compute_scale_zp(np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32),
                                     np.array(i.min, dtype=d), np.array(i.max, dtype=d))
            out.append([int(zp), float(s)])
        print(json.dumps(out))
        """,
      arguments: [
        String(
          decoding: try JSONSerialization.data(
            withJSONObject: ranges.map { [Double($0.0), Double($0.1), $0.2.rawValue] }),
          as: UTF8.self)
      ])
    let expected = try #require(
      try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[Double]])
    for ((low, high, type), reference) in zip(ranges, expected) {
      let p = try QuantParams.asymmetric(minimum: low, maximum: high, type: type)
      #expect(Double(p.zeroPoint) == reference[0], "zero point of [\(low), \(high)] \(type)")
      // Foundation's JSON reader may miss the last digit of a double; the float32 is exact.
      #expect(p.scale == Float(reference[1]), "scale of [\(low), \(high)] \(type)")
    }
  }

  // MARK: Bit-exact against numpy

  private struct ConvCase {
    var geometry: Conv2DGeometry
    var uint8Input: Bool
    var activation: FusedActivation
    var residual: Bool
    var withBias: Bool
  }

  private static let convCases: [ConvCase] = [
    ConvCase(
      geometry: Conv2DGeometry(
        batch: 2, inputHeight: 7, inputWidth: 6, inputChannels: 5, outputChannels: 4,
        kernelHeight: 3, kernelWidth: 3, pads: (1, 1, 1, 1)),
      uint8Input: false, activation: .none, residual: false, withBias: true),
    ConvCase(
      geometry: Conv2DGeometry(
        batch: 1, inputHeight: 9, inputWidth: 8, inputChannels: 6, outputChannels: 6,
        kernelHeight: 3, kernelWidth: 3, strides: (2, 2), pads: (1, 0, 1, 2), groups: 6),
      uint8Input: true, activation: .relu6, residual: false, withBias: true),
    ConvCase(
      geometry: Conv2DGeometry(
        batch: 1, inputHeight: 8, inputWidth: 8, inputChannels: 4, outputChannels: 6,
        kernelHeight: 3, kernelWidth: 2, strides: (1, 2), pads: (2, 1, 2, 1),
        dilations: (2, 2), groups: 2),
      uint8Input: false, activation: .relu, residual: true, withBias: true),
    ConvCase(
      geometry: Conv2DGeometry(
        batch: 2, inputHeight: 4, inputWidth: 5, inputChannels: 64, outputChannels: 3,
        kernelHeight: 1, kernelWidth: 1),
      uint8Input: true, activation: .clip(lower: -0.3, upper: 0.7), residual: true,
      withBias: false),
    // Large accumulators (above 2^24) exercise the float32 conversion of acc.
    ConvCase(
      geometry: Conv2DGeometry(
        batch: 1, inputHeight: 5, inputWidth: 5, inputChannels: 128, outputChannels: 8,
        kernelHeight: 3, kernelWidth: 3, pads: (1, 1, 1, 1)),
      uint8Input: false, activation: .none, residual: false, withBias: true),
  ]

  @Test(
    "conv2d is bit-exact against numpy",
    .requiresPython,
    arguments: 0..<5)
  func conv2dMatchesNumpy(caseIndex: Int) throws {
    let c = Self.convCases[caseIndex]
    let g = c.geometry
    var rng = QuantRandom(seed: 1000 + UInt64(caseIndex))
    let inputCount = g.batch * g.inputHeight * g.inputWidth * g.inputChannels
    let outputCount = g.batch * g.outputHeight * g.outputWidth * g.outputChannels
    let weightCount =
      g.outputChannels * g.kernelHeight * g.kernelWidth * (g.inputChannels / g.groups)
    let large = caseIndex == 4
    let weights = (0..<weightCount).map { _ in
      large ? Int8.random(in: 120...127, using: &rng) : Int8.random(in: -127...127, using: &rng)
    }
    let bias = (0..<g.outputChannels).map { _ in Int32.random(in: -5000...5000, using: &rng) }
    let inputScale = Float.random(in: 0.01...0.05, using: &rng)
    let weightScales = (0..<g.outputChannels).map { _ in
      Float.random(in: 0.001...0.01, using: &rng)
    }
    // The large case is scaled so the biggest accumulator (about 1.8e7) maps near 110.
    let outputScale =
      large
      ? Float(1.8e7) * inputScale * (weightScales.max() ?? 0) / 110
      : Float.random(in: 0.02...0.2, using: &rng)
    let residualParams = try QuantParams(type: .int8, scale: 0.07, zeroPoint: 0)
    let residual = (0..<outputCount).map { _ in Int8.random(in: -128...127, using: &rng) }

    let outZP: Int32 = c.uint8Input ? -7 : 0
    let output = try QuantParams(type: .int8, scale: outputScale, zeroPoint: outZP)
    let r = try Requantization(
      inputScale: inputScale, weightScales: weightScales, output: output,
      activation: c.activation, residual: c.residual ? residualParams : nil)
    var result = [Int8](repeating: 0, count: outputCount)
    let inputCodes: [Int]
    let inputZP: Int32
    if c.uint8Input {
      let input = (0..<inputCount).map { _ in UInt8.random(in: 0...255, using: &rng) }
      inputZP = 113
      inputCodes = input.map(Int.init)
      try run(input, zp: inputZP, weights, bias, c, g, r, residual, &result)
    } else {
      let input = (0..<inputCount).map { _ in
        large ? Int8.random(in: 120...127, using: &rng) : Int8.random(in: -128...127, using: &rng)
      }
      inputZP = 0
      inputCodes = input.map(Int.init)
      try run(input, zp: inputZP, weights, bias, c, g, r, residual, &result)
    }
    var object: [String: Any] = [
      "kind": "conv2d", "batch": g.batch, "height": g.inputHeight, "width": g.inputWidth,
      "inputChannels": g.inputChannels, "outputChannels": g.outputChannels,
      "kernelHeight": g.kernelHeight, "kernelWidth": g.kernelWidth, "groups": g.groups,
      "strides": [g.strides.height, g.strides.width],
      "pads": [g.pads.top, g.pads.left, g.pads.bottom, g.pads.right],
      "dilations": [g.dilations.height, g.dilations.width],
      "input": inputCodes, "inputZeroPoint": Int(inputZP), "weights": weights.map(Int.init),
      "inputScale": Double(inputScale), "weightScales": weightScales.map(Double.init),
      "outputScale": Double(outputScale), "outputZeroPoint": Int(outZP), "outputType": "int8",
    ]
    if c.withBias { object["bias"] = bias.map(Int.init) }
    if c.residual {
      object["residual"] = residual.map(Int.init)
      object["residualScale"] = Double(residualParams.scale)
      object["residualZeroPoint"] = 0
    }
    let bounds = c.activation.realBounds
    object["clip"] = [
      bounds.lower.isFinite ? Double(bounds.lower) as Any : NSNull(),
      bounds.upper.isFinite ? Double(bounds.upper) as Any : NSNull(),
    ]
    let expected = try quantReferenceCodes(object)
    #expect(expected.count == result.count)
    let mismatches = zip(result.map(Int.init), expected).enumerated().filter {
      $0.element.0 != $0.element.1
    }
    #expect(mismatches.isEmpty, "\(mismatches.count) mismatches, first \(mismatches.prefix(5))")
    // The case must exercise the requantisation, not collapse to one saturated value.
    #expect(Set(result).count > 3)
  }

  private func run<In: FixedWidthInteger>(
    _ input: [In], zp: Int32, _ weights: [Int8], _ bias: [Int32], _ c: ConvCase,
    _ g: Conv2DGeometry, _ r: Requantization, _ residual: [Int8], _ result: inout [Int8]
  ) throws {
    try referenceConv2d(
      input: input, inputZeroPoint: zp, weights: weights, bias: c.withBias ? bias : nil,
      geometry: g, requantization: r, residual: c.residual ? residual : nil, output: &result)
  }

  @Test(
    "int16 activations (per-node override) in and out are bit-exact against numpy",
    .requiresPython)
  func int16ConvMatchesNumpy() throws {
    var rng = QuantRandom(seed: 16)
    let g = Conv2DGeometry(
      batch: 1, inputHeight: 6, inputWidth: 6, inputChannels: 8, outputChannels: 4,
      kernelHeight: 3, kernelWidth: 3, strides: (2, 1), pads: (1, 1, 1, 1))
    let input = (0..<(6 * 6 * 8)).map { _ in Int16.random(in: -32768...32767, using: &rng) }
    let weights = (0..<(4 * 9 * 8)).map { _ in Int8.random(in: -127...127, using: &rng) }
    let bias = (0..<4).map { _ in Int32.random(in: -100_000...100_000, using: &rng) }
    let inputParams = try QuantParams.symmetric(threshold: 3.1, type: .int16)
    let outputParams = try QuantParams.symmetric(threshold: 9.7, type: .int16)
    let weightScales: [Float] = [0.002, 0.003, 0.0041, 0.0017]
    let r = try Requantization(
      inputScale: inputParams.scale, weightScales: weightScales, output: outputParams,
      activation: .relu6)
    var result = [Int16](repeating: 0, count: g.outputHeight * g.outputWidth * 4)
    try input.withUnsafeBufferPointer { x in
      try weights.withUnsafeBufferPointer { w in
        try bias.withUnsafeBufferPointer { b in
          try result.withUnsafeMutableBufferPointer { out in
            try ReferenceKernels.conv2d(
              input: x, inputZeroPoint: 0, weights: w, bias: b, geometry: g, requantization: r,
              output: out)
          }
        }
      }
    }
    let expected = try quantReferenceCodes([
      "kind": "conv2d", "batch": 1, "height": 6, "width": 6, "inputChannels": 8,
      "outputChannels": 4, "kernelHeight": 3, "kernelWidth": 3, "groups": 1, "strides": [2, 1],
      "pads": [1, 1, 1, 1], "dilations": [1, 1], "input": input.map(Int.init),
      "inputZeroPoint": 0, "weights": weights.map(Int.init), "bias": bias.map(Int.init),
      "inputScale": Double(inputParams.scale), "weightScales": weightScales.map(Double.init),
      "outputScale": Double(outputParams.scale), "outputZeroPoint": 0, "outputType": "int16",
      "clip": [0.0, 6.0],
    ])
    #expect(result.map(Int.init) == expected)
    #expect(Set(result).count > 10)
  }

  @Test(
    "gemm is bit-exact against numpy",
    .requiresPython)
  func gemmMatchesNumpy() throws {
    var rng = QuantRandom(seed: 77)
    let (m, n, k) = (3, 10, 300)
    let a = (0..<(m * k)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let b = (0..<(n * k)).map { _ in Int8.random(in: -127...127, using: &rng) }
    let bias = (0..<n).map { _ in Int32.random(in: -20000...20000, using: &rng) }
    let weightScales = (0..<n).map { _ in Float.random(in: 0.001...0.01, using: &rng) }
    let output = try QuantParams(type: .uint8, scale: 0.9, zeroPoint: 37)
    let r = try Requantization(inputScale: 0.02, weightScales: weightScales, output: output)
    var result = [UInt8](repeating: 0, count: m * n)
    try a.withUnsafeBufferPointer { x in
      try b.withUnsafeBufferPointer { w in
        try bias.withUnsafeBufferPointer { bb in
          try result.withUnsafeMutableBufferPointer { out in
            try ReferenceKernels.gemm(
              a: x, aZeroPoint: 128, b: w, bias: bb, m: m, n: n, k: k, requantization: r,
              output: out)
          }
        }
      }
    }
    let expected = try quantReferenceCodes([
      "kind": "gemm", "m": m, "n": n, "k": k, "input": a.map(Int.init), "inputZeroPoint": 128,
      "weights": b.map(Int.init), "bias": bias.map(Int.init), "inputScale": Double(Float(0.02)),
      "weightScales": weightScales.map(Double.init), "outputScale": Double(Float(0.9)),
      "outputZeroPoint": 37, "outputType": "uint8", "clip": [NSNull(), NSNull()],
    ])
    #expect(result.map(Int.init) == expected)
    #expect(Set(result).count > 5)
  }

  @Test(
    "add and global average pool are bit-exact against numpy",
    .requiresPython)
  func addAndPoolMatchNumpy() throws {
    var rng = QuantRandom(seed: 5)
    let count = 2000
    let a = (0..<count).map { _ in Int8.random(in: -128...127, using: &rng) }
    let b = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let pa = try QuantParams(type: .int8, scale: 0.031)
    let pb = try QuantParams(type: .uint8, scale: 0.017, zeroPoint: 120)
    let po = try QuantParams(type: .int8, scale: 0.043, zeroPoint: -3)
    var sum = [Int8](repeating: 0, count: count)
    try a.withUnsafeBufferPointer { x in
      try b.withUnsafeBufferPointer { y in
        try sum.withUnsafeMutableBufferPointer { out in
          try ReferenceKernels.add(
            x, pa, y, pb, output: out, outputParams: po, activation: .clip(lower: -4, upper: 3))
        }
      }
    }
    let expectedSum = try quantReferenceCodes([
      "kind": "add", "a": a.map(Int.init), "b": b.map(Int.init), "aScale": Double(pa.scale),
      "aZeroPoint": 0, "bScale": Double(pb.scale), "bZeroPoint": 120,
      "outputScale": Double(po.scale), "outputZeroPoint": -3, "outputType": "int8",
      "clip": [-4.0, 3.0],
    ])
    #expect(sum.map(Int.init) == expectedSum)

    let (n, h, w, c) = (2, 7, 7, 24)
    let x = (0..<(n * h * w * c)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let pin = try QuantParams(type: .uint8, scale: 0.05, zeroPoint: 10)
    let pout = try QuantParams(type: .uint8, scale: 0.03, zeroPoint: 5)
    var pooled = [UInt8](repeating: 0, count: n * c)
    try x.withUnsafeBufferPointer { xs in
      try pooled.withUnsafeMutableBufferPointer { out in
        try ReferenceKernels.globalAveragePool(
          input: xs, inputParams: pin, batch: n, height: h, width: w, channels: c, output: out,
          outputParams: pout)
      }
    }
    let expectedPool = try quantReferenceCodes([
      "kind": "gap", "batch": n, "height": h, "width": w, "channels": c,
      "input": x.map(Int.init), "inputZeroPoint": 10, "inputScale": Double(pin.scale),
      "outputScale": Double(pout.scale), "outputZeroPoint": 5, "outputType": "uint8",
    ])
    #expect(pooled.map(Int.init) == expectedPool)
  }

  @Test(
    "lookup tables match numpy for every nonlinearity and code",
    .requiresPython,
    arguments: Nonlinearity.allCases)
  func lookupTables(function: Nonlinearity) throws {
    let input = try QuantParams(type: .int8, scale: 0.05)
    let output = try QuantParams(type: .uint8, scale: 0.01, zeroPoint: 90)
    let table = try LookupTable(function, input: input, output: output)
    let expected = try quantReferenceCodes([
      "kind": "lut", "function": function.rawValue, "inputType": "int8", "inputZeroPoint": 0,
      "inputScale": Double(input.scale), "outputType": "uint8", "outputZeroPoint": 90,
      "outputScale": Double(output.scale),
    ])
    #expect(table.entries.map(Int.init) == expected)
    // Apply maps each code through its entry.
    let codes = (Int8.min...Int8.max).map { $0 }
    var mapped = [UInt8](repeating: 0, count: codes.count)
    try codes.withUnsafeBufferPointer { c in
      try mapped.withUnsafeMutableBufferPointer { m in try table.apply(c, into: m) }
    }
    #expect(mapped.map(Int.init) == expected)
  }

  @Test("lookup table by hand; wrong types are rejected")
  func lookupTableByHand() throws {
    let p = try QuantParams(type: .int8, scale: 0.5)
    let negate = try LookupTable(input: p, output: p) { -$0 }
    #expect(negate.entries[0] == 127)  // -(-128) saturates
    #expect(negate.entries[128 + 5] == -5)
    let sigmoid = try LookupTable(
      .sigmoid, input: p, output: try QuantParams(type: .int8, scale: 1.0 / 256))
    #expect(sigmoid.entries[128] == 127)  // sigmoid(0) = 0.5 -> 128 saturates to 127
    var out = [UInt8](repeating: 0, count: 1)
    #expect(throws: QuantizationError.self) {
      try [Int8(0)].withUnsafeBufferPointer { c in
        try out.withUnsafeMutableBufferPointer { try negate.apply(c, into: $0) }
      }
    }
    #expect(throws: QuantizationError.self) {
      try LookupTable(.tanh, input: QuantParams(type: .int16, scale: 1), output: p)
    }
  }

  @Test("kernels reject inconsistent shapes and types with clear errors")
  func shapeErrors() throws {
    let g = Conv2DGeometry(
      batch: 1, inputHeight: 3, inputWidth: 3, inputChannels: 3, outputChannels: 2,
      kernelHeight: 3, kernelWidth: 3, groups: 2)
    let r = try Requantization(
      inputScale: 1, weightScales: [1, 1], output: QuantParams(type: .int8, scale: 1))
    let x = [Int8](repeating: 0, count: 27)
    let w = [Int8](repeating: 0, count: 54)
    var out = [Int8](repeating: 0, count: 2)
    do {
      try x.withUnsafeBufferPointer { xs in
        try w.withUnsafeBufferPointer { ws in
          try out.withUnsafeMutableBufferPointer { o in
            try ReferenceKernels.conv2d(
              input: xs, inputZeroPoint: 0, weights: ws, bias: nil, geometry: g,
              requantization: r, output: o)
          }
        }
      }
      Issue.record("groups that do not divide the channels were accepted")
    } catch let error as QuantizationError {
      #expect(error.description.contains("groups"))
    }
    var wrongType = [UInt8](repeating: 0, count: 2)
    let g1 = Conv2DGeometry(
      batch: 1, inputHeight: 3, inputWidth: 3, inputChannels: 3, outputChannels: 2,
      kernelHeight: 3, kernelWidth: 3)
    #expect(throws: QuantizationError.self) {
      try x.withUnsafeBufferPointer { xs in
        try w.withUnsafeBufferPointer { ws in
          try wrongType.withUnsafeMutableBufferPointer { o in
            try ReferenceKernels.conv2d(
              input: xs, inputZeroPoint: 0, weights: ws, bias: nil, geometry: g1,
              requantization: r, output: o)
          }
        }
      }
    }
  }
}
