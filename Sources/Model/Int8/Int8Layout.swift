import Foundation

/// Conversions between the model's float tensors (row-major, NCHW for rank 4) and the
/// engine's codes (channels-last for rank 4), with the scheme's exact arithmetic:
/// `q = saturate(round_half_even(x / scale) + zp)` and `x = Float(q − zp) · scale`.
enum Int8Layout {
  /// Maps a row-major (NCHW) element index to the engine's layout (NHWC for rank 4).
  @inline(__always)
  static func engineIndex(_ i: Int, c: Int, hw: Int) -> Int {
    let n = i / (c * hw)
    let rest = i - n * c * hw
    let ch = rest / hw
    let p = rest - ch * hw
    return (n * hw + p) * c + ch
  }

  /// Convolution weights `[o, i, kh, kw]` (OIHW, ONNX's layout) rearranged to OHWI, the
  /// layout of the int8 convolution kernel and of `ReferenceKernels.conv2d`.
  static func ohwi<Element: ExpressibleByIntegerLiteral>(
    _ oihw: [Element], o: Int, i: Int, kh: Int, kw: Int
  ) -> [Element] {
    var ohwi = [Element](repeating: 0, count: oihw.count)
    for oc in 0..<o {
      for ic in 0..<i {
        for y in 0..<kh {
          for x in 0..<kw {
            ohwi[((oc * kh + y) * kw + x) * i + ic] = oihw[((oc * i + ic) * kh + y) * kw + x]
          }
        }
      }
    }
    return ohwi
  }

  /// (channels, spatial size) when the engine's layout differs from row-major, else nil.
  static func channelsLast(_ shape: [Int]) -> (c: Int, hw: Int)? {
    guard shape.count == 4, shape[1] > 1, shape[2] * shape[3] > 1 else { return nil }
    return (shape[1], shape[2] * shape[3])
  }

  /// Quantises row-major floats of `shape` into codes in the engine's layout.
  static func quantize(
    _ values: UnsafeBufferPointer<Float>, shape: [Int], params: QuantParams,
    into codes: UnsafeMutableRawPointer
  ) throws {
    let scale = params.scale
    let zp = Float(params.zeroPoint)
    let low = Float(params.type.minimum) - zp
    let high = Float(params.type.maximum) - zp
    let layout = channelsLast(shape)
    func store<Code: FixedWidthInteger>(_: Code.Type) {
      let out = codes.assumingMemoryBound(to: Code.self)
      @inline(__always) func code(_ x: Float) -> Code {
        let v = x / scale
        // NaN input: the zero point (the engine's documented treatment, as in `Quantizer`).
        let clamped = v.isNaN ? 0 : (v < low ? low : (v > high ? high : v))
        return Code(truncatingIfNeeded: Int32(clamped.rounded(.toNearestOrEven) + zp))
      }
      guard let (c, hw) = layout, values.count % (c * hw) == 0 else {
        for i in 0..<values.count { out[i] = code(values[i]) }
        return
      }
      // Row-major order in, channel stride out: no index division per element (this runs on
      // every input image).
      var i = 0
      for n in 0..<values.count / (c * hw) {
        for ch in 0..<c {
          var j = n * hw * c + ch
          for _ in 0..<hw {
            out[j] = code(values[i])
            i += 1
            j += c
          }
        }
      }
    }
    switch params.type {
    case .int8: store(Int8.self)
    case .uint8: store(UInt8.self)
    case .int16: store(Int16.self)
    default:
      throw QuantizationError.invalidParameter("activations of type \(params.type.rawValue)")
    }
  }

  /// Dequantises codes in the engine's layout into row-major floats of `shape`.
  static func dequantize(
    _ codes: UnsafeRawPointer, shape: [Int], params: QuantParams,
    into values: UnsafeMutableBufferPointer<Float>
  ) throws {
    let scale = params.scale
    let zp = params.zeroPoint
    let layout = channelsLast(shape)
    func load<Code: FixedWidthInteger>(_: Code.Type) {
      let input = codes.assumingMemoryBound(to: Code.self)
      for i in 0..<values.count {
        let j = layout.map { engineIndex(i, c: $0.c, hw: $0.hw) } ?? i
        values[i] = Float(Int32(input[j]) - zp) * scale
      }
    }
    switch params.type {
    case .int8: load(Int8.self)
    case .uint8: load(UInt8.self)
    case .int16: load(Int16.self)
    default:
      throw QuantizationError.invalidParameter("activations of type \(params.type.rawValue)")
    }
  }
}
