import Foundation

// The int8 scheme this engine implements. It is ours; the oneDNN int8 kernels must reproduce
// the scalar reference kernels in `ReferenceKernels` bit for bit.
//
// * Activations: int8 symmetric per tensor by default (the Horizon toolchain's choice):
//   `scale = T / 127`, zero point 0, codes saturate to [-128, 127]. Alternatively asymmetric
//   uint8 (onnxruntime's default) or asymmetric int8: the range is widened to include 0,
//   `scale = (max - min) / (qmax - qmin)`, `zp = round_half_even(qmin - min / scale)`.
//   Per-node overrides may use int16 symmetric per tensor: `scale = T / 32767`.
// * Weights: int8 symmetric per output channel by default, or per tensor; zero point 0.
// * Quantisation of a float follows ONNX QuantizeLinear in float32:
//   `q = saturate(round_half_even(x / scale) + zp)`; dequantisation `x = (q - zp) * scale`.
// * Bias: int32 in accumulator units, `bias_q[oc] = saturate32(round_half_even(bias / (s_in *
//   s_w[oc])))`, the product and the quotient each rounded to float32.
// * Accumulation: exact int32 sums of `(q_x - zp_x) * q_w`.
// * Requantisation: see `Requantization`, which mirrors oneDNN 2.x
//   `dst = eltwise(oscale[oc] * (acc + bias) + sum_scale * dst_old) + zp_dst`, rounded half to
//   even and saturated on store.

/// The integer type of a quantised tensor.
public enum QuantizedType: String, Sendable, CaseIterable {
  /// Signed 8-bit codes, [-128, 127].
  case int8
  /// Unsigned 8-bit codes, [0, 255].
  case uint8
  /// Signed 16-bit codes, used for per-node int16 overrides.
  case int16
  /// Signed 32-bit codes, used for biases in accumulator units.
  case int32

  /// The smallest code.
  public var minimum: Int64 {
    switch self {
    case .int8: return Int64(Int8.min)
    case .uint8: return 0
    case .int16: return Int64(Int16.min)
    case .int32: return Int64(Int32.min)
    }
  }

  /// The largest code.
  public var maximum: Int64 {
    switch self {
    case .int8: return Int64(Int8.max)
    case .uint8: return Int64(UInt8.max)
    case .int16: return Int64(Int16.max)
    case .int32: return Int64(Int32.max)
    }
  }

  /// The largest magnitude a symmetric encoding uses (127 for int8): the range stays
  /// symmetric, so -128 is reachable only by saturation.
  public var symmetricLimit: Int64 { maximum }

  /// The type whose range `T` covers, if any.
  static func of<T: FixedWidthInteger>(_: T.Type) -> QuantizedType? {
    if T.self == Int8.self { return .int8 }
    if T.self == UInt8.self { return .uint8 }
    if T.self == Int16.self { return .int16 }
    if T.self == Int32.self { return .int32 }
    return nil
  }
}

/// An error in quantisation parameters, calibration or a reference kernel call.
public enum QuantizationError: Error, Equatable, CustomStringConvertible {
  /// A parameter is out of its domain; the message names the tensor or kernel.
  case invalidParameter(String)
  /// Buffer sizes disagree with the declared geometry.
  case shapeMismatch(String)
  /// A calibration tensor held NaN or infinity.
  case nonFinite(tensor: String, batch: Int, index: Int, value: Float)
  /// Calibration was asked for a tensor that never saw data, or no batch was seen at all.
  case noCalibrationData(String)

  /// The error as one line naming the tensor or kernel concerned.
  public var description: String {
    switch self {
    case .invalidParameter(let message): return "invalid quantisation parameter: \(message)"
    case .shapeMismatch(let message): return "shape mismatch: \(message)"
    case .nonFinite(let tensor, let batch, let index, let value):
      return
        "tensor '\(tensor)' holds \(value) at element \(index) of calibration batch \(batch);"
        + " calibration needs finite values"
    case .noCalibrationData(let message): return "no calibration data: \(message)"
    }
  }
}

/// Scale(s) and zero point(s) of a quantised tensor: one pair per tensor, or one per channel
/// along `axis`.
public struct QuantParams: Equatable, Sendable {
  /// The integer type of the codes.
  public let type: QuantizedType
  /// One scale per tensor, or one per channel; all positive and finite.
  public let scales: [Float]
  /// One zero point per scale, inside the range of `type`.
  public let zeroPoints: [Int32]
  /// The channel axis when there is more than one scale.
  public let axis: Int?

  /// Per-tensor parameters.
  public init(type: QuantizedType, scale: Float, zeroPoint: Int32 = 0) throws {
    try self.init(type: type, scales: [scale], zeroPoints: [zeroPoint], axis: nil)
  }

  /// Per-channel (or, with one scale, per-tensor) parameters; validates every value.
  public init(type: QuantizedType, scales: [Float], zeroPoints: [Int32], axis: Int?) throws {
    guard !scales.isEmpty, scales.count == zeroPoints.count else {
      throw QuantizationError.invalidParameter(
        "\(scales.count) scales but \(zeroPoints.count) zero points")
    }
    if scales.count > 1, axis == nil {
      throw QuantizationError.invalidParameter("\(scales.count) scales need a channel axis")
    }
    for (index, scale) in scales.enumerated() where !(scale.isFinite && scale > 0) {
      throw QuantizationError.invalidParameter("scale[\(index)] = \(scale) is not positive")
    }
    for (index, zp) in zeroPoints.enumerated()
    where Int64(zp) < type.minimum || Int64(zp) > type.maximum {
      throw QuantizationError.invalidParameter(
        "zero point[\(index)] = \(zp) is outside \(type.rawValue)")
    }
    self.type = type
    self.scales = scales
    self.zeroPoints = zeroPoints
    self.axis = axis
  }

  /// The single scale of a per-tensor parameter set (the first one otherwise).
  public var scale: Float { scales[0] }
  /// The single zero point of a per-tensor parameter set (the first one otherwise).
  public var zeroPoint: Int32 { zeroPoints[0] }
  /// True when one scale covers the whole tensor.
  public var isPerTensor: Bool { scales.count == 1 }

  /// Symmetric parameters for a clipping threshold `T`: `scale = T / limit` in float32,
  /// zero point 0. A zero threshold (an all-zero tensor) gets scale 1, which represents the
  /// zeros exactly.
  public static func symmetric(threshold: Float, type: QuantizedType = .int8) throws
    -> QuantParams
  {
    guard threshold.isFinite, threshold >= 0 else {
      throw QuantizationError.invalidParameter("threshold \(threshold) is not finite and >= 0")
    }
    guard type != .uint8 else {
      throw QuantizationError.invalidParameter("uint8 cannot be symmetric")
    }
    let scale = threshold > 0 ? threshold / Float(type.symmetricLimit) : 1
    return try QuantParams(type: type, scale: scale > 0 ? scale : Float.leastNormalMagnitude)
  }

  /// Asymmetric parameters for a range, computed as onnxruntime's `compute_scale_zp` does:
  /// the range is widened to contain 0, `scale = (max - min) / (qmax - qmin)` and
  /// `zp = round_half_even(qmin - min / scale)` in float64, then the scale is stored as
  /// float32. An empty range (both 0) gets scale 1 and zero point 0.
  public static func asymmetric(minimum: Float, maximum: Float, type: QuantizedType = .uint8)
    throws -> QuantParams
  {
    guard minimum.isFinite, maximum.isFinite, minimum <= maximum else {
      throw QuantizationError.invalidParameter("range [\(minimum), \(maximum)] is not valid")
    }
    guard type == .int8 || type == .uint8 || type == .int16 else {
      throw QuantizationError.invalidParameter("asymmetric \(type.rawValue) is not supported")
    }
    let low = Double(Swift.min(minimum, 0))
    let high = Double(Swift.max(maximum, 0))
    let qmin = Double(type.minimum)
    let qmax = Double(type.maximum)
    let scale = (high - low) / (qmax - qmin)
    guard scale >= Double(Float.leastNormalMagnitude) else {
      return try QuantParams(type: type, scale: 1, zeroPoint: 0)
    }
    let zp = Swift.min(Swift.max((qmin - low / scale).rounded(.toNearestOrEven), qmin), qmax)
    return try QuantParams(type: type, scale: Float(scale), zeroPoint: Int32(zp))
  }
}

/// How a model's tensors are quantised: the activation encoding and the weight granularity.
public struct QuantizationScheme: Equatable, Sendable {
  /// The encoding of activations (per tensor).
  public enum ActivationEncoding: String, Sendable {
    /// int8, zero point 0, `scale = T / 127` (Horizon toolchain).
    case symmetricInt8
    /// uint8 with a zero point (onnxruntime's default).
    case asymmetricUInt8
    /// int8 with a zero point.
    case asymmetricInt8
  }

  /// How many scales a weight tensor gets.
  public enum WeightGranularity: String, Sendable {
    /// One scale per output channel (axis 0 of OHWI / OIHW / [out, in]).
    case perChannel
    /// One scale for the whole tensor.
    case perTensor
  }

  /// The activation encoding.
  public var activations: ActivationEncoding
  /// The weight granularity; weights are always int8 symmetric.
  public var weights: WeightGranularity

  /// Creates a scheme; the defaults are the Horizon toolchain's.
  public init(
    activations: ActivationEncoding = .symmetricInt8, weights: WeightGranularity = .perChannel
  ) {
    self.activations = activations
    self.weights = weights
  }

  /// Activation parameters for a calibrated tensor. Symmetric encodings use the threshold;
  /// asymmetric ones use the observed range clipped to `[-threshold, threshold]`.
  public func activationParams(threshold: Float, minimum: Float, maximum: Float) throws
    -> QuantParams
  {
    switch activations {
    case .symmetricInt8:
      return try .symmetric(threshold: threshold, type: .int8)
    case .asymmetricUInt8, .asymmetricInt8:
      let low = Swift.max(minimum, -threshold)
      let high = Swift.min(maximum, threshold)
      return try .asymmetric(
        minimum: Swift.min(low, high), maximum: high,
        type: activations == .asymmetricUInt8 ? .uint8 : .int8)
    }
  }
}
