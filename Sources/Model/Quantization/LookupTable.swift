import Foundation

/// An elementwise nonlinearity that the int8 engine evaluates through a lookup table.
public enum Nonlinearity: String, Sendable, CaseIterable {
  /// `x · Φ(x)` with the exact error function (ONNX Gelu, approximate = none).
  case gelu
  /// `1 / (1 + e^-x)`.
  case sigmoid
  /// `x · min(max(x + 3, 0), 6) / 6` (ONNX HardSwish).
  case hardSwish
  /// `tanh(x)`.
  case tanh

  /// The function in float64.
  public func callAsFunction(_ x: Double) -> Double {
    switch self {
    case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
    case .sigmoid: return 1 / (1 + exp(-x))
    case .hardSwish: return x * Swift.min(Swift.max(x + 3, 0), 6) / 6
    case .tanh: return Foundation.tanh(x)
    }
  }
}

/// A 256-entry table that maps each 8-bit input code to its output code.
///
/// Entry `c` is `saturate(round_half_even(f((c - zp_in) · s_in) / s_out) + zp_out)`, the
/// dequantisation, `f` and the division done in float64 (the scales are widened from float32
/// exactly). This is the whole int8 semantics of GELU, Sigmoid, HardSwish and Tanh.
public struct LookupTable: Equatable, Sendable {
  /// The input code type (`int8` or `uint8`).
  public let inputType: QuantizedType
  /// The output code type (`int8` or `uint8`).
  public let outputType: QuantizedType
  /// Output codes indexed by `input code - inputType.minimum`.
  public let entries: [Int32]

  /// Builds the table of `function` for the given input and output parameters.
  public init(
    input: QuantParams, output: QuantParams, function: (Double) -> Double
  ) throws {
    for (role, params) in [("input", input), ("output", output)] {
      guard params.isPerTensor, params.type == .int8 || params.type == .uint8 else {
        throw QuantizationError.invalidParameter(
          "lookup table: \(role) must be per-tensor int8 or uint8, not \(params.type.rawValue)"
            + " with \(params.scales.count) scales")
      }
    }
    inputType = input.type
    outputType = output.type
    let sIn = Double(input.scale)
    let sOut = Double(output.scale)
    let zpIn = Int64(input.zeroPoint)
    let zpOut = Double(output.zeroPoint)
    let low = Double(output.type.minimum)
    let high = Double(output.type.maximum)
    entries = (input.type.minimum...input.type.maximum).map { code in
      let y = function(Double(code - zpIn) * sIn)
      if y.isNaN { return Int32(zpOut) }
      let q = (y / sOut).rounded(.toNearestOrEven) + zpOut
      return Int32(Swift.min(Swift.max(q, low), high))
    }
  }

  /// Builds the table of a standard nonlinearity.
  public init(_ nonlinearity: Nonlinearity, input: QuantParams, output: QuantParams) throws {
    try self.init(input: input, output: output, function: { nonlinearity($0) })
  }

  /// Maps every code of `input` through the table into `output`.
  // Pre-specialised for the 8-bit pairs so callers in other modules get a specialised loop.
  @_specialize(where In == Int8, Out == Int8)
  @_specialize(where In == UInt8, Out == UInt8)
  @_specialize(where In == Int8, Out == UInt8)
  @_specialize(where In == UInt8, Out == Int8)
  public func apply<In: FixedWidthInteger, Out: FixedWidthInteger>(
    _ input: UnsafeBufferPointer<In>, into output: UnsafeMutableBufferPointer<Out>
  ) throws {
    guard QuantizedType.of(In.self) == inputType, QuantizedType.of(Out.self) == outputType else {
      throw QuantizationError.invalidParameter(
        "lookup table maps \(inputType.rawValue) to \(outputType.rawValue), called with \(In.self)"
          + " to \(Out.self)")
    }
    guard input.count == output.count else {
      throw QuantizationError.shapeMismatch(
        "lookup table: \(input.count) inputs into \(output.count) outputs")
    }
    let offset = Int(-inputType.minimum)
    entries.withUnsafeBufferPointer { table in
      for i in 0..<input.count {
        output[i] = Out(truncatingIfNeeded: table[Int(input[i]) + offset])
      }
    }
  }
}
