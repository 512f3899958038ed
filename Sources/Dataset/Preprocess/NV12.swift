/// BT.601 NV12 (YUV 4:2:0, a full-resolution Y plane followed by interleaved U,V at half
/// resolution in both directions) round trips on a square, even-sided RGB image.
///
/// Subsampling: video range takes the chroma of the top-left pixel of each 2×2 block (what
/// OpenCV's `COLOR_BGR2YUV_I420` does, verified bit-exact against cv2 5.0); full range averages
/// the four pixels' chroma values before rounding (what a box-filtering camera/JPEG front end
/// produces). Upsampling: each chroma sample is replicated over its 2×2 block (nearest
/// neighbour), which is how the Horizon runtime expands NV12 to YUV444 and how OpenCV's
/// `COLOR_YUV2RGB_NV12` reads it.
enum NV12 {
  private static let shift = 20
  private static let half = 1 << 19

  /// OpenCV's fixed-point RGB → YUV420 (ITU-R BT.601 video range, `ITUR_BT_601_SHIFT` 20).
  static func encodeVideoRange(
    rgb: UnsafePointer<UInt8>, side: Int, luma: UnsafeMutablePointer<UInt8>,
    chroma: UnsafeMutablePointer<UInt8>
  ) {
    let lumaOffset = half + (16 << shift)
    let chromaOffset = half + (128 << shift)
    for pixel in 0..<(side * side) {
      let r = Int(rgb[3 * pixel])
      let g = Int(rgb[3 * pixel + 1])
      let b = Int(rgb[3 * pixel + 2])
      luma[pixel] = clamp((269_484 * r + 528_482 * g + 102_760 * b + lumaOffset) >> shift)
    }
    let halfSide = side / 2
    for y in 0..<halfSide {
      for x in 0..<halfSide {
        let pixel = (2 * y * side + 2 * x) * 3
        let r = Int(rgb[pixel])
        let g = Int(rgb[pixel + 1])
        let b = Int(rgb[pixel + 2])
        let target = (y * halfSide + x) * 2
        chroma[target] = clamp((-155_188 * r - 305_135 * g + 460_324 * b + chromaOffset) >> shift)
        chroma[target + 1] = clamp(
          (460_324 * r - 385_875 * g - 74_448 * b + chromaOffset) >> shift)
      }
    }
  }

  /// OpenCV's fixed-point YUV420 → RGB (video range): `y = max(Y - 16, 0) * 1.164`, coefficients
  /// 1.596, -0.813, -0.391, 2.018 at 20 bits, rounded by adding half before the shift.
  static func decodeVideoRange(
    luma: UnsafePointer<UInt8>, chroma: UnsafePointer<UInt8>, side: Int,
    rgb: UnsafeMutablePointer<UInt8>
  ) {
    let halfSide = side / 2
    for y in 0..<side {
      for x in 0..<side {
        let c = ((y / 2) * halfSide + x / 2) * 2
        let u = Int(chroma[c]) - 128
        let v = Int(chroma[c + 1]) - 128
        let pixel = y * side + x
        let scaled = max(Int(luma[pixel]) - 16, 0) * 1_220_542
        rgb[3 * pixel] = clamp((scaled + 1_673_527 * v + half) >> shift)
        rgb[3 * pixel + 1] = clamp((scaled - 852_492 * v - 409_993 * u + half) >> shift)
        rgb[3 * pixel + 2] = clamp((scaled + 2_116_026 * u + half) >> shift)
      }
    }
  }

  /// BT.601 full range (JFIF matrix) in double precision, rounded half up; chroma is the mean of
  /// the 2×2 block's four chroma values.
  static func encodeFullRange(
    rgb: UnsafePointer<UInt8>, side: Int, luma: UnsafeMutablePointer<UInt8>,
    chroma: UnsafeMutablePointer<UInt8>
  ) {
    for pixel in 0..<(side * side) {
      let r = Double(rgb[3 * pixel])
      let g = Double(rgb[3 * pixel + 1])
      let b = Double(rgb[3 * pixel + 2])
      luma[pixel] = round(0.299 * r + 0.587 * g + 0.114 * b)
    }
    let halfSide = side / 2
    for y in 0..<halfSide {
      for x in 0..<halfSide {
        var u = 0.0
        var v = 0.0
        for corner in 0..<4 {
          let pixel = ((2 * y + corner / 2) * side + 2 * x + corner % 2) * 3
          let r = Double(rgb[pixel])
          let g = Double(rgb[pixel + 1])
          let b = Double(rgb[pixel + 2])
          u += -0.168_736 * r - 0.331_264 * g + 0.5 * b
          v += 0.5 * r - 0.418_688 * g - 0.081_312 * b
        }
        let target = (y * halfSide + x) * 2
        chroma[target] = round(u / 4 + 128)
        chroma[target + 1] = round(v / 4 + 128)
      }
    }
  }

  /// BT.601 full range back to RGB: `R = Y + 1.402 V'`, `G = Y - 0.344136 U' - 0.714136 V'`,
  /// `B = Y + 1.772 U'` with `U' = U - 128`, `V' = V - 128`, rounded half up.
  static func decodeFullRange(
    luma: UnsafePointer<UInt8>, chroma: UnsafePointer<UInt8>, side: Int,
    rgb: UnsafeMutablePointer<UInt8>
  ) {
    let halfSide = side / 2
    for y in 0..<side {
      for x in 0..<side {
        let c = ((y / 2) * halfSide + x / 2) * 2
        let u = Double(chroma[c]) - 128
        let v = Double(chroma[c + 1]) - 128
        let pixel = y * side + x
        let value = Double(luma[pixel])
        rgb[3 * pixel] = round(value + 1.402 * v)
        rgb[3 * pixel + 1] = round(value - 0.344_136 * u - 0.714_136 * v)
        rgb[3 * pixel + 2] = round(value + 1.772 * u)
      }
    }
  }

  /// NV12 → YUV444 by replicating each chroma sample over its 2×2 block.
  static func expandToYUV444(
    luma: UnsafePointer<UInt8>, chroma: UnsafePointer<UInt8>, side: Int,
    output: UnsafeMutablePointer<UInt8>
  ) {
    let halfSide = side / 2
    for y in 0..<side {
      for x in 0..<side {
        let c = ((y / 2) * halfSide + x / 2) * 2
        let pixel = y * side + x
        output[3 * pixel] = luma[pixel]
        output[3 * pixel + 1] = chroma[c]
        output[3 * pixel + 2] = chroma[c + 1]
      }
    }
  }

  @inline(__always)
  private static func clamp(_ value: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: value < 0 ? 0 : (value > 255 ? 255 : value))
  }

  @inline(__always)
  private static func round(_ value: Double) -> UInt8 {
    let rounded = (value + 0.5).rounded(.down)
    return UInt8(rounded < 0 ? 0 : (rounded > 255 ? 255 : rounded))
  }
}
