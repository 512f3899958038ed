import Foundation

/// Conversions between float32 buffers and quantised codes, with the exact arithmetic of the
/// engine's int8 scheme (see `QuantParams`).
public enum Quantizer {
  /// Quantises `values` into `codes` as ONNX QuantizeLinear does, in float32:
  /// `q = saturate(round_half_even(x / scale) + zp)`. Infinities saturate; NaN becomes the
  /// zero point and is counted so the caller can record it.
  ///
  /// - Returns: the number of NaN inputs.
  @discardableResult
  // Callers in other modules see only the generic signature; these pre-specialised bodies
  // keep the hot loop from running unspecialised generic code (several times slower).
  @_specialize(where Code == Int8)
  @_specialize(where Code == UInt8)
  @_specialize(where Code == Int16)
  public static func quantize<Code: FixedWidthInteger>(
    _ values: UnsafeBufferPointer<Float>, into codes: UnsafeMutableBufferPointer<Code>,
    scale: Float, zeroPoint: Int32
  ) throws -> Int {
    guard values.count == codes.count else {
      throw QuantizationError.shapeMismatch(
        "quantize: \(values.count) values into \(codes.count) codes")
    }
    guard scale.isFinite, scale > 0 else {
      throw QuantizationError.invalidParameter("quantize: scale \(scale)")
    }
    guard Code.bitWidth <= 16 else {
      throw QuantizationError.invalidParameter("quantize: \(Code.self) codes are not supported")
    }
    let zp = Float(zeroPoint)
    // Clamping x / scale to [qmin - zp, qmax - zp] before rounding equals saturating after it
    // (the bounds are integers and rounding is monotonic), and keeps the integer conversion
    // in range for huge values and infinities.
    let low = Float(Code.min) - zp
    let high = Float(Code.max) - zp
    var nanCount = 0
    // Selects instead of branches, and a concrete Int32 conversion, keep the loop fast.
    for i in 0..<values.count {
      let v = values[i] / scale
      let isNaN = v.isNaN
      nanCount &+= isNaN ? 1 : 0
      let clamped = isNaN ? 0 : (v < low ? low : (v > high ? high : v))
      codes[i] = Code(truncatingIfNeeded: Int32(clamped.rounded(.toNearestOrEven) + zp))
    }
    return nanCount
  }

  /// Dequantises codes: `x = Float(q - zp) * scale`, in float32.
  // Callers in other modules see only the generic signature; these pre-specialised bodies
  // keep the hot loop from running unspecialised generic code (several times slower).
  @_specialize(where Code == Int8)
  @_specialize(where Code == UInt8)
  @_specialize(where Code == Int16)
  public static func dequantize<Code: FixedWidthInteger>(
    _ codes: UnsafeBufferPointer<Code>, into values: UnsafeMutableBufferPointer<Float>,
    scale: Float, zeroPoint: Int32
  ) throws {
    guard values.count == codes.count else {
      throw QuantizationError.shapeMismatch(
        "dequantize: \(codes.count) codes into \(values.count) values")
    }
    for i in 0..<codes.count {
      values[i] = Float(Int32(codes[i]) - zeroPoint) * scale
    }
  }

  /// Quantises a weight tensor whose first axis is the output channel (OHWI, OIHW or
  /// [out, in]): int8 symmetric, one scale per output channel (`max|w_oc| / 127` in float32)
  /// or one per tensor. An all-zero channel gets scale 1.
  public static func quantizeWeights(
    _ weights: [Float], outputChannels: Int, granularity: QuantizationScheme.WeightGranularity
  ) throws -> (codes: [Int8], params: QuantParams) {
    guard outputChannels > 0, weights.count % outputChannels == 0 else {
      throw QuantizationError.shapeMismatch(
        "weights: \(weights.count) values do not split into \(outputChannels) output channels")
    }
    if let bad = weights.firstIndex(where: { !$0.isFinite }) {
      throw QuantizationError.invalidParameter("weights: element \(bad) is \(weights[bad])")
    }
    let perChannel = weights.count / outputChannels
    var scales: [Float]
    switch granularity {
    case .perTensor:
      let maxAbs = weights.reduce(Float(0)) { Swift.max($0, abs($1)) }
      scales = [maxAbs > 0 ? maxAbs / 127 : 1]
    case .perChannel:
      scales = (0..<outputChannels).map { oc in
        let slice = weights[(oc * perChannel)..<((oc + 1) * perChannel)]
        let maxAbs = slice.reduce(Float(0)) { Swift.max($0, abs($1)) }
        return maxAbs > 0 ? maxAbs / 127 : 1
      }
    }
    var codes = [Int8](repeating: 0, count: weights.count)
    try weights.withUnsafeBufferPointer { w in
      try codes.withUnsafeMutableBufferPointer { q in
        for (index, scale) in scales.enumerated() {
          let range =
            scales.count == 1
            ? 0..<weights.count : (index * perChannel)..<((index + 1) * perChannel)
          try quantize(
            UnsafeBufferPointer(rebasing: w[range]),
            into: UnsafeMutableBufferPointer(rebasing: q[range]), scale: scale, zeroPoint: 0)
        }
      }
    }
    let params = try QuantParams(
      type: .int8, scales: scales, zeroPoints: [Int32](repeating: 0, count: scales.count),
      axis: scales.count > 1 ? 0 : nil)
    return (codes, params)
  }

  /// Quantises a bias into accumulator units: `bias_q[oc] = saturate32(round_half_even(
  /// bias[oc] / (s_in * s_w[oc])))`, the product and the quotient rounded to float32.
  public static func quantizeBias(
    _ bias: [Float], inputScale: Float, weightScales: [Float]
  ) throws -> [Int32] {
    guard weightScales.count == 1 || weightScales.count == bias.count else {
      throw QuantizationError.shapeMismatch(
        "bias: \(bias.count) values but \(weightScales.count) weight scales")
    }
    return try bias.enumerated().map { oc, b in
      guard b.isFinite else {
        throw QuantizationError.invalidParameter("bias: element \(oc) is \(b)")
      }
      let biasScale = inputScale * weightScales[weightScales.count == 1 ? 0 : oc]
      let q = (b / biasScale).rounded(.toNearestOrEven)
      return Int32(Swift.min(Swift.max(q, -2_147_483_648), 2_147_483_520))
    }
  }
}

/// A fused activation, applied to the requantised value before the zero point is added.
public enum FusedActivation: Equatable, Sendable {
  /// No clamp.
  case none
  /// `max(x, 0)`.
  case relu
  /// `min(max(x, 0), 6)`.
  case relu6
  /// `min(max(x, lower), upper)` in real units.
  case clip(lower: Float, upper: Float)

  var realBounds: (lower: Float, upper: Float) {
    switch self {
    case .none: return (-.infinity, .infinity)
    case .relu: return (0, .infinity)
    case .relu6: return (0, 6)
    case .clip(let lower, let upper): return (lower, upper)
    }
  }
}

/// Requantisation of int32 accumulators to output codes, the arithmetic the oneDNN int8
/// kernels must reproduce bit for bit. With `acc` the exact int32 sum of
/// `(q_x - zp_x) * q_w` and everything below in float32, each operation rounded separately
/// except the residual term, which is one fused multiply-add:
///
/// ```
/// m[oc]     = (s_in * s_w[oc]) / s_out                    // once per channel
/// y         = (Float(acc) + Float(bias_q[oc])) * m[oc]   // oneDNN: oscale * (acc + bias)
/// y         = fma(Float(q_res - zp_res), sum_scale, y)  // optional residual, sum_scale = s_res / s_out
/// y         = min(max(y, lower / s_out), upper / s_out)  // optional fused clamp (ReLU, ReLU6, clip)
/// y         = y + Float(zp_out)
/// q_out     = round_half_even(min(max(y, qmin), qmax))   // saturate on store
/// ```
///
/// The zero point is added in float32 before rounding, as oneDNN 2.x adds `zp_dst` before its
/// round-to-nearest-even conversion; for symmetric outputs (`zp_out = 0`) this equals
/// `saturate(round_half_even(y))`. Both choices (zero point before rounding, fused residual)
/// were checked against oneDNN 2.6.3 (`brgconv_1x1:avx512_core_vnni`, u8 output) with a C
/// probe on inputs built so the alternatives differ: 8192/8192 and 1536/1536 outputs agreed
/// with this formulation and none with the alternative. The residual is read in its own quantised type and scale
/// and enters before the clamp, so `Conv → Add → ReLU` fuses as `conv + sum + relu`.
public struct Requantization: Equatable, Sendable {
  /// `(s_in * s_w[oc]) / s_out` in float32, one per output channel (or one for all).
  public let multipliers: [Float]
  /// The output zero point.
  public let outputZeroPoint: Int32
  /// The output code type, which fixes the saturation range.
  public let outputType: QuantizedType
  /// The clamp bounds in output-scale units, `bound / s_out` in float32.
  public let lowerBound: Float
  /// See `lowerBound`.
  public let upperBound: Float
  /// `s_res / s_out` in float32 when a residual is summed.
  public let residualScale: Float?
  /// The residual's zero point.
  public let residualZeroPoint: Int32

  /// Builds the per-channel multipliers from the scales of the input, weights and output.
  public init(
    inputScale: Float, weightScales: [Float], output: QuantParams,
    activation: FusedActivation = .none, residual: QuantParams? = nil
  ) throws {
    guard output.isPerTensor else {
      throw QuantizationError.invalidParameter("requantisation: output must be per tensor")
    }
    guard inputScale.isFinite, inputScale > 0, !weightScales.isEmpty,
      weightScales.allSatisfy({ $0.isFinite && $0 > 0 })
    else {
      throw QuantizationError.invalidParameter(
        "requantisation: input scale \(inputScale), weight scales must be positive")
    }
    let outScale = output.scale
    multipliers = weightScales.map { (inputScale * $0) / outScale }
    outputZeroPoint = output.zeroPoint
    outputType = output.type
    let bounds = activation.realBounds
    guard bounds.lower <= bounds.upper else {
      throw QuantizationError.invalidParameter(
        "requantisation: clip [\(bounds.lower), \(bounds.upper)] is empty")
    }
    lowerBound = bounds.lower / outScale
    upperBound = bounds.upper / outScale
    if let residual {
      guard residual.isPerTensor else {
        throw QuantizationError.invalidParameter("requantisation: residual must be per tensor")
      }
      residualScale = residual.scale / outScale
      residualZeroPoint = residual.zeroPoint
    } else {
      residualScale = nil
      residualZeroPoint = 0
    }
  }

  /// The output code for one accumulator; `residual` is ignored unless a residual scale is
  /// set. `channel` indexes `multipliers` (any value when there is one multiplier).
  @inline(__always)
  public func requantize(_ acc: Int32, bias: Int32, channel: Int, residual: Int32 = 0) -> Int32 {
    let m = multipliers.count == 1 ? multipliers[0] : multipliers[channel]
    var y = (Float(acc) + Float(bias)) * m
    if let residualScale {
      // Fused multiply-add, one rounding: oneDNN's sum post-op does this (see above).
      y = y.addingProduct(Float(residual - residualZeroPoint), residualScale)
    }
    y = Swift.min(Swift.max(y, lowerBound), upperBound)
    return Requantization.store(y + Float(outputZeroPoint), type: outputType)
  }

  /// Saturates a float32 value to `type` and rounds it half to even, as a oneDNN store does.
  /// NaN stores as 0 (it cannot arise from finite codes and scales).
  @inline(__always)
  static func store(_ y: Float, type: QuantizedType) -> Int32 {
    if y.isNaN { return 0 }
    let clamped = Swift.min(Swift.max(y, Float(type.minimum)), Float(type.maximum))
    // int32's maximum is not a float32; the largest float below 2^31 is the safe bound.
    return Int32(Swift.min(clamped.rounded(.toNearestOrEven), 2_147_483_520))
  }
}
