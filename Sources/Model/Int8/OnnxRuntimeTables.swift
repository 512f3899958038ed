import CInt8Kernels
import Foundation

// The calibrated int8 engine's GELU and residual Add, computed exactly as onnxruntime
// computes the engine's QDQ export (`Int8Engine.quantizedModel`), so that the exported model
// and the engine agree bit for bit. The export writes the engine's int8 codes as uint8 with
// the zero point moved by 128; onnxruntime then runs `DequantizeLinear → Gelu →
// QuantizeLinear` in float32 and `DequantizeLinear → Add → QuantizeLinear` as its integer
// QLinearAdd. Both are functions of 8-bit codes, so the engine holds them as tables built
// once with onnxruntime's float32 arithmetic.

extension LookupTable {
  /// The exact GELU as onnxruntime computes a QDQ model's `DequantizeLinear → Gelu →
  /// QuantizeLinear` (opset-20 CPU kernel on x86), every step in float32:
  ///
  /// ```
  /// x = Float(q - zp_in) · s_in                  // DequantizeLinear
  /// e = erf_MLAS(x · 0.70710677)                 // Gelu: MlasComputeErf
  /// y = (0.5 · x) · (e + 1)
  /// q_out = saturate(round_half_even(y / s_out)) + zp_out   // QuantizeLinear
  /// ```
  ///
  /// It differs from the float64 definition (`LookupTable(.gelu, …)`) in entries whose
  /// value lies next to a rounding boundary.
  static func onnxRuntimeGelu(input: QuantParams, output: QuantParams) throws -> LookupTable {
    // Checks the parameters (8-bit, per tensor) as every table does.
    let checked = try LookupTable(input: input, output: output) { $0 }
    let sqrtHalf = Float(0.70710678118654752440)
    let sIn = input.scale
    let sOut = output.scale
    let low = Float(output.type.minimum) - Float(output.zeroPoint)
    let high = Float(output.type.maximum) - Float(output.zeroPoint)
    let entries = (input.type.minimum...input.type.maximum).map { code -> Int32 in
      let x = Float(Int32(code) - input.zeroPoint) * sIn
      let e = OnnxRuntimeArithmetic.erf(x * sqrtHalf)
      let y = (0.5 * x) * (e + 1)
      let v = y / sOut
      let clamped = v.isNaN ? 0 : min(max(v, low), high)
      return Int32(clamped.rounded(.toNearestOrEven)) + output.zeroPoint
    }
    return LookupTable(
      inputType: checked.inputType, outputType: checked.outputType, entries: entries)
  }

  private init(inputType: QuantizedType, outputType: QuantizedType, entries: [Int32]) {
    self.inputType = inputType
    self.outputType = outputType
    self.entries = entries
  }
}

/// A residual Add of two 8-bit code tensors with onnxruntime's QLinearAdd arithmetic on the
/// codes as the QDQ export writes them (uint8; int8 codes shifted by 128), see
/// `Int8QLinearArithmetic`:
///
/// ```
/// r_a = s_a / s_c, r_b = s_b / s_c, k = zp_c - (r_a·zp_a + r_b·zp_b)     (uint8 zero points)
/// u_c = saturate(round_half_even(fma(u_a, r_a, fma(u_b, r_b, k))))
/// ```
///
/// The output code depends on the pair of input codes alone: a 65,536-entry byte table
/// indexed by the two input bytes (in uint8 order), built once.
final class Int8AddTableKernel {
  /// Output byte (the engine's bit pattern) per `(u_a << 8) | u_b`.
  let entries: UnsafeMutablePointer<UInt8>
  /// `s_a / s_c`, `s_b / s_c` and `k` of the uint8 arithmetic (see above).
  private let ra: Float
  private let rb: Float
  private let k: Float
  /// Whether the AVX2/FMA kernel runs (else the table).
  static let vectorized = ie_int8_has_avx2_fma() == 1
  /// XORed into an int8 code's bit pattern to get its uint8 code `q + 128` (0 for uint8).
  private let flip: UInt8
  private let a: UnsafeRawPointer
  private let b: UnsafeRawPointer
  private let output: UnsafeMutableRawPointer
  private let count: Int

  /// Both inputs and the output must be per-tensor codes of one 8-bit type.
  init(
    a: (UnsafeRawPointer, QuantParams), b: (UnsafeRawPointer, QuantParams),
    output: (UnsafeMutableRawPointer, QuantParams), count: Int
  ) throws {
    let params = [a.1, b.1, output.1]
    guard let type = params.first?.type, type == .int8 || type == .uint8,
      params.allSatisfy({ $0.type == type && $0.isPerTensor })
    else {
      throw QuantizationError.invalidParameter(
        "add table: inputs and output must be per-tensor codes of one 8-bit type")
    }
    let arithmetic = try Self.arithmetic(a.1, b.1, output.1)
    flip = type == .int8 ? 0x80 : 0
    // The same ratios and constant as `Int8QLinearArithmetic`, for the vector kernel.
    let (sa, sb, sc) = (a.1.scale, b.1.scale, output.1.scale)
    func unsignedZero(_ p: QuantParams) -> Float {
      Float(p.type == .int8 ? p.zeroPoint + 128 : p.zeroPoint)
    }
    let (za, zb, zc) = (unsignedZero(a.1), unsignedZero(b.1), unsignedZero(output.1))
    ra = sa / sc
    rb = sb / sc
    k = zc - (ra * za + rb * zb)
    entries = .allocate(capacity: 65_536)
    for ua in 0..<256 {
      for ub in 0..<256 {
        let code = arithmetic.code(Int32(ua), Int32(ub))
        entries[ua << 8 | ub] = UInt8(truncatingIfNeeded: code) ^ flip
      }
    }
    self.a = a.0
    self.b = b.0
    self.output = output.0
    self.count = count
  }

  deinit { entries.deallocate() }

  /// onnxruntime's QLinearAdd on the uint8 codes the export writes for these parameters.
  static func arithmetic(_ a: QuantParams, _ b: QuantParams, _ output: QuantParams) throws
    -> Int8QLinearArithmetic
  {
    func unsigned(_ p: QuantParams) throws -> QuantParams {
      p.type == .uint8
        ? p : try QuantParams(type: .uint8, scale: p.scale, zeroPoint: p.zeroPoint + 128)
    }
    guard
      let arithmetic = Int8QLinearArithmetic(
        .add, a: try unsigned(a), b: try unsigned(b), output: try unsigned(output))
    else { throw QuantizationError.invalidParameter("add table: no QLinearAdd arithmetic") }
    return arithmetic
  }

  func run(threads: Int) {
    let x = a.assumingMemoryBound(to: UInt8.self)
    let y = b.assumingMemoryBound(to: UInt8.self)
    let z = output.assumingMemoryBound(to: UInt8.self)
    let table = UnsafePointer(entries)
    let flip = self.flip
    let count = self.count
    let (ra, rb, k) = (self.ra, self.rb, self.k)
    let vectorized = Self.vectorized
    let blocks = (count + 4095) / 4096
    KernelTeam.forEachRange(
      blocks, threads: min(threads, KernelTeam.threads(forBytes: 2 * count))
    ) { range in
      let start = range.lowerBound * 4096
      let end = min(count, range.upperBound * 4096)
      if vectorized {
        ie_int8_qlinear_add_avx2(x + start, y + start, z + start, end - start, ra, rb, k, flip)
        return
      }
      for i in start..<end {
        z[i] = table[Int(x[i] ^ flip) << 8 | Int(y[i] ^ flip)]
      }
    }
  }
}
