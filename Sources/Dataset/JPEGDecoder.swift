import CTurboJPEG

/// Why an image could not be decoded; the pipeline records it as a per-image skip.
public struct DecodeFailure: Error, CustomStringConvertible, Equatable {
  /// Human-readable reason, e.g. `not a JPEG: PNG data` or `corrupt JPEG: …`.
  public let reason: String
  public var description: String { reason }
}

/// Decodes JPEG bytes to 8-bit RGB with TurboJPEG, reusing one output buffer.
///
/// Policy (also in the report):
/// - Accurate integer IDCT (`JDCT_ISLOW`) and fancy upsampling by default: the same pixels as
///   Pillow (which uses libjpeg-turbo with the same settings). `fastDCT` switches to the fast
///   integer IDCT, which changes pixels slightly and so may change accuracy.
/// - Grayscale becomes R = G = B. CMYK/YCCK JPEGs are read as Adobe-inverted CMYK (what
///   Photoshop writes and Pillow assumes) and converted with Pillow's `CMYK -> RGB` formula.
/// - Bytes that are not JPEG fail with the detected format (`not a JPEG: PNG data`).
/// - TurboJPEG fatal errors fail (`corrupt JPEG: <libjpeg message>`). A premature end of data
///   also fails (`truncated JPEG`), because Pillow refuses truncated files by default and
///   libjpeg would otherwise pad the image with gray. Other libjpeg warnings (e.g. extraneous
///   bytes before a marker) keep the image, as Pillow does, and are returned as a warning.
/// - Images over `maxPixels` (default Pillow's decompression-bomb limit) fail before any
///   allocation.
public final class JPEGDecoder {
  /// Decoding choices that affect pixels or limits.
  public struct Options: Sendable, Equatable {
    /// Fast integer IDCT instead of the accurate one; changes pixels.
    public var fastDCT: Bool
    /// Decode at the smallest TurboJPEG scale (1/8 … 1) still at least the transform's
    /// `minimumDecodeSize`; faster, but pixels differ from a full-size decode.
    public var fastDecode: Bool
    /// Largest accepted output size in pixels.
    public var maxPixels: Int

    /// Accurate, full-size decoding with Pillow's decompression-bomb limit (2 × 89,478,485).
    public init(fastDCT: Bool = false, fastDecode: Bool = false, maxPixels: Int = 178_956_970) {
      self.fastDCT = fastDCT
      self.fastDecode = fastDecode
      self.maxPixels = maxPixels
    }
  }

  private var handle: tjhandle
  private let options: Options
  private var cmykScratch: [UInt8] = []
  private static let scalingFactors: [tjscalingfactor] = {
    var count: Int32 = 0
    guard let factors = tjGetScalingFactors(&count), count > 0 else {
      return [tjscalingfactor(num: 1, denom: 1)]
    }
    return Array(UnsafeBufferPointer(start: factors, count: Int(count)))
  }()

  /// Makes a decoder; each worker thread owns one.
  public init(options: Options = Options()) throws {
    guard let handle = tjInitDecompress() else {
      throw DecodeFailure(reason: "TurboJPEG could not create a decompressor")
    }
    self.handle = handle
    self.options = options
  }

  deinit { tjDestroy(handle) }

  /// The scaled size TurboJPEG produces for `factor` (its `TJSCALED` macro).
  static func scaled(_ dimension: Int, _ factor: tjscalingfactor) -> Int {
    (dimension * Int(factor.num) + Int(factor.denom) - 1) / Int(factor.denom)
  }

  /// The smallest scale (at most 1) whose output still covers `minimum` in both dimensions.
  static func scalingFactor(
    width: Int, height: Int, minimum: (width: Int, height: Int)
  ) -> tjscalingfactor {
    var best = tjscalingfactor(num: 1, denom: 1)
    for factor in scalingFactors where factor.num <= factor.denom {
      let w = scaled(width, factor)
      let h = scaled(height, factor)
      if w >= minimum.width, h >= minimum.height, w * h < scaled(width, best) * scaled(height, best)
      {
        best = factor
      }
    }
    return best
  }

  /// Names the format of bytes that are not a JPEG, or nil for a JPEG start-of-image marker.
  public static func detectedFormat(_ bytes: UnsafeRawBufferPointer) -> String? {
    func starts(_ prefix: [UInt8]) -> Bool {
      bytes.count >= prefix.count && zip(bytes, prefix).allSatisfy { $0 == $1 }
    }
    if starts([0xFF, 0xD8, 0xFF]) { return nil }
    if bytes.isEmpty { return "empty data" }
    if starts([0x89, 0x50, 0x4E, 0x47]) { return "PNG data" }
    if starts(Array("GIF8".utf8)) { return "GIF data" }
    if starts(Array("BM".utf8)) { return "BMP data" }
    if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "TIFF data" }
    if bytes.count >= 12, starts(Array("RIFF".utf8)),
      Array(bytes[8..<12]) == Array("WEBP".utf8)
    {
      return "WebP data"
    }
    let head = bytes.prefix(8).map {
      String($0, radix: 16).count == 1 ? "0\(String($0, radix: 16))" : String($0, radix: 16)
    }
    return "unknown data starting with bytes \(head.joined(separator: " "))"
  }

  private func message() -> String {
    guard let text = tjGetErrorStr2(handle) else { return "unknown TurboJPEG error" }
    return String(cString: text)
  }

  /// TurboJPEG 2.1 can leave a handle in a broken state after a failed header read (the next
  /// good image then fails too), so any failure gets a fresh handle.
  private func fail(_ reason: String) -> DecodeFailure {
    if let fresh = tjInitDecompress() {
      tjDestroy(handle)
      handle = fresh
    }
    return DecodeFailure(reason: reason)
  }

  /// Decodes `bytes` into `image` (its buffer only grows) and returns a libjpeg warning if the
  /// data was damaged but decodable. `minimumSize` is consulted only with `fastDecode`.
  @discardableResult
  public func decode(
    _ bytes: UnsafeRawBufferPointer, into image: inout RGBImage,
    minimumSize: ((_ width: Int, _ height: Int) -> (width: Int, height: Int))? = nil
  ) throws -> String? {
    // The JPEG signature is checked inline: `detectedFormat` builds arrays, fine for the
    // rare non-JPEG but not for every image.
    let isJPEG = bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
    if !isJPEG, let format = JPEGDecoder.detectedFormat(bytes) {
      throw DecodeFailure(reason: "not a JPEG: \(format)")
    }
    guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
      let length = UInt(exactly: bytes.count)
    else { throw DecodeFailure(reason: "not a JPEG: empty data") }
    var width: Int32 = 0
    var height: Int32 = 0
    var subsampling: Int32 = 0
    var colorspace: Int32 = 0
    if tjDecompressHeader3(handle, base, length, &width, &height, &subsampling, &colorspace) != 0 {
      // TurboJPEG also reports warnings (junk before a marker) as failures here; the header
      // is still valid then, and the decode below reports the warning again.
      guard tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue), width > 0, height > 0 else {
        throw fail("corrupt JPEG header: \(message())")
      }
    }
    guard width > 0, height > 0 else {
      throw DecodeFailure(reason: "corrupt JPEG header: size \(width)x\(height)")
    }
    var factor = tjscalingfactor(num: 1, denom: 1)
    if options.fastDecode, let minimumSize {
      factor = JPEGDecoder.scalingFactor(
        width: Int(width), height: Int(height), minimum: minimumSize(Int(width), Int(height)))
    }
    let outWidth = JPEGDecoder.scaled(Int(width), factor)
    let outHeight = JPEGDecoder.scaled(Int(height), factor)
    guard outWidth * outHeight <= options.maxPixels else {
      throw DecodeFailure(
        reason: "image too large: \(width)x\(height) exceeds \(options.maxPixels) pixels")
    }
    let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
    let channels = isCMYK ? 4 : 3
    let flags = options.fastDCT ? TJFLAG_FASTDCT : TJFLAG_ACCURATEDCT
    let needed = outWidth * outHeight * 3
    image.pixels.growScratch(to: needed)
    if isCMYK { cmykScratch.growScratch(to: outWidth * outHeight * 4) }
    let pixelFormat = isCMYK ? Int32(TJPF_CMYK.rawValue) : Int32(TJPF_RGB.rawValue)
    let status: Int32
    if isCMYK {
      status = cmykScratch.withUnsafeMutableBufferPointer { out in
        tjDecompress2(
          handle, base, length, out.baseAddress, Int32(outWidth), Int32(outWidth * channels),
          Int32(outHeight), pixelFormat, flags)
      }
    } else {
      status = image.pixels.withUnsafeMutableBufferPointer { out in
        tjDecompress2(
          handle, base, length, out.baseAddress, Int32(outWidth), Int32(outWidth * channels),
          Int32(outHeight), pixelFormat, flags)
      }
    }
    var warning: String?
    if status != 0 {
      let text = message()
      guard tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) else {
        throw fail("corrupt JPEG: \(text)")
      }
      if text.contains("Premature end") {
        throw fail("truncated JPEG: \(text)")
      }
      warning = text
    }
    if isCMYK { convertInvertedCMYK(pixelCount: outWidth * outHeight, into: &image.pixels) }
    image.width = outWidth
    image.height = outHeight
    return warning
  }

  /// Pillow's `CMYK;I` unpacking followed by its `cmyk2rgb`: with inverted samples c', k'
  /// the channel is k' - round(c'' * k' / 255) where c'' = 255 - c'.
  private func convertInvertedCMYK(pixelCount: Int, into pixels: inout [UInt8]) {
    cmykScratch.withUnsafeBufferPointer { source in
      pixels.withUnsafeMutableBufferPointer { out in
        for index in 0..<pixelCount {
          let nk = Int(source[index * 4 + 3])
          for channel in 0..<3 {
            let c = 255 - Int(source[index * 4 + channel])
            let t = c * nk + 128
            let product = ((t >> 8) + t) >> 8
            out[index * 3 + channel] = UInt8(clamping: nk - product)
          }
        }
      }
    }
  }
}
