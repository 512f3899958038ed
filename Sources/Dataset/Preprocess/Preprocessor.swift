import Foundation

/// Turns a decoded RGB image into one normalised float tensor, reproducing a reference pipeline
/// (Pillow/torchvision, timm, OpenCV, the Horizon RDK NV12 path) pixel for pixel.
///
/// Stages: geometry (resize + centre crop, central fraction, or letterbox), optional NV12 round
/// trip, then normalisation and layout fused into one pass that writes every output float once.
/// Only the output rows and columns the crop keeps are resampled; the coefficients are those of
/// the full-size resize, so the result is identical to resizing everything and cropping after.
///
/// Letterbox placement (ultralytics `letterbox`, which Horizon's demos copy): scale
/// `r = min(C / w, C / h)`, resized size `round(w * r) × round(h * r)` (half to even), offsets
/// `left = round((C - nw) / 2 - 0.1)`, `top = round((C - nh) / 2 - 0.1)`, so an odd margin puts
/// the extra pad row/column at the bottom/right; the border is `letterboxPad` in every channel
/// before any colour conversion.
///
/// One instance per worker thread: it owns scratch buffers that only grow, and caches
/// coefficient tables per source size.
public final class Preprocessor: ImageTransform {
  /// The configuration this instance reproduces.
  public let config: PreprocessConfig
  /// Floats written per image: `3 * cropSize * cropSize`.
  public let outputElementCount: Int

  private let side: Int
  private let lookup: [Float]
  private let sourceChannel: [Int]
  private var plans: [Int: ResizePlan] = [:]
  private var canvas: [UInt8] = []
  private let resampler = Resampler()
  private var lumaPlane: [UInt8] = []
  private var chromaPlane: [UInt8] = []

  /// Builds a preprocessor; throws `PreprocessConfigError` for an inconsistent configuration.
  public init(config: PreprocessConfig) throws {
    try config.validate()
    self.config = config
    side = config.cropSize
    outputElementCount = config.outputElementCount
    let scale = config.effectiveScale
    var table = [Float](repeating: 0, count: 3 * 256)
    for channel in 0..<3 {
      for value in 0..<256 {
        let centred = Double(value) - config.mean[channel]
        table[channel * 256 + value] =
          config.scale == nil
          ? Float(centred / config.std[channel]) : Float(centred * scale[channel])
      }
    }
    lookup = table
    sourceChannel = config.channels == .bgr ? [2, 1, 0] : [0, 1, 2]
  }

  /// Builds a preprocessor for a named preset (see `PreprocessPreset`).
  public convenience init(preset: PreprocessPreset) throws {
    try self.init(config: preset.config)
  }

  /// The decoded size below which some resize would become an upscale.
  public func minimumDecodeSize(sourceWidth: Int, sourceHeight: Int) -> (width: Int, height: Int) {
    guard sourceWidth > 0, sourceHeight > 0 else { return (sourceWidth, sourceHeight) }
    // Integer ceilings where possible, so an exact fit (375 → 256) never rounds up to 257.
    func scaled(_ side: Int, by numerator: Int, over denominator: Int) -> Int {
      (side * numerator + denominator - 1) / denominator
    }
    let short = min(sourceWidth, sourceHeight)
    let long = max(sourceWidth, sourceHeight)
    let size: (width: Int, height: Int)
    switch config.geometry {
    case .resizeCrop:
      let target = config.effectiveResizeSize
      size = (
        scaled(sourceWidth, by: target, over: short), scaled(sourceHeight, by: target, over: short)
      )
    case .letterbox:
      size = (scaled(sourceWidth, by: side, over: long), scaled(sourceHeight, by: side, over: long))
    case .centralFraction:
      let factor = Double(side) / (config.centralFraction * Double(short))
      size = (
        Int((Double(sourceWidth) * factor).rounded(.up)),
        Int((Double(sourceHeight) * factor).rounded(.up))
      )
    }
    guard size.width < sourceWidth || size.height < sourceHeight else {
      return (sourceWidth, sourceHeight)
    }
    return (min(size.width, sourceWidth), min(size.height, sourceHeight))
  }

  /// Writes the normalised tensor for `image` into `output` (exactly `outputElementCount`).
  public func apply(_ image: RGBImage, into output: UnsafeMutableBufferPointer<Float>) throws {
    guard output.count >= outputElementCount else {
      throw PreprocessError.outputTooSmall(needed: outputElementCount, got: output.count)
    }
    try render(image)
    writeTensor(into: output)
  }

  /// The 8-bit image the model sees before normalisation: `cropSize` × `cropSize`, channels in
  /// output order (R,G,B; B,G,R; or Y,U,V). For `inspect --dump` and for tests.
  public func pixels(for image: RGBImage) throws -> RGBImage {
    try render(image)
    var result = RGBImage(width: side, height: side, pixels: canvas)
    if config.channels == .bgr {
      for pixel in 0..<(side * side) {
        result.pixels.swapAt(3 * pixel, 3 * pixel + 2)
      }
    }
    return result
  }

  /// Tests: run the resampler's per-length loops instead of its window kernels.
  var resamplerUsesWindows: Bool {
    get { resampler.usesWindows }
    set { resampler.usesWindows = newValue }
  }

  /// The resize + crop plan for one source size (cached), exposed for tests.
  func plan(width: Int, height: Int) throws -> ResizePlan {
    let key = width &* 1_000_003 &+ height
    if let cached = plans[key], cached.sourceWidth == width, cached.sourceHeight == height {
      return cached
    }
    let made = try ResizePlan(config: config, width: width, height: height)
    // ImageNet has a few hundred distinct sizes; a bound keeps odd datasets from growing it.
    if plans.count >= 512 { plans.removeAll(keepingCapacity: true) }
    plans[key] = made
    return made
  }

  // MARK: - Stages

  /// Geometry and colour: leaves the final 8-bit image in `canvas`.
  private func render(_ image: RGBImage) throws {
    try renderGeometry(image)
    convertColour()
  }

  /// Writes the tensor for the geometry `leader` has just rendered (before its colour
  /// conversion): `PreprocessorSet` resamples once for every output that shares a geometry.
  func applyGeometry(
    of leader: Preprocessor, into output: UnsafeMutableBufferPointer<Float>
  ) throws {
    guard output.count >= outputElementCount else {
      throw PreprocessError.outputTooSmall(needed: outputElementCount, got: output.count)
    }
    let count = side * side * 3
    if canvas.count < count { canvas = [UInt8](repeating: 0, count: count) }
    leader.canvas.withUnsafeBufferPointer { source in
      canvas.withUnsafeMutableBufferPointer { target in
        _ = target.update(fromContentsOf: UnsafeBufferPointer(rebasing: source[..<count]))
      }
    }
    convertColour()
    writeTensor(into: output)
  }

  /// The geometry stage alone (resize, crop or letterbox) into `canvas`, for `PreprocessorSet`.
  func renderGeometry(_ image: RGBImage) throws {
    let width = image.width
    let height = image.height
    guard width > 0, height > 0 else {
      throw PreprocessError.emptyImage(width: width, height: height)
    }
    guard image.pixels.count >= width * height * 3 else {
      throw PreprocessError.shortPixelBuffer(
        width: width, height: height, count: image.pixels.count)
    }
    let plan = try plan(width: width, height: height)
    let canvasCount = side * side * 3
    if canvas.count < canvasCount { canvas = [UInt8](repeating: 0, count: canvasCount) }
    if !plan.coversOutput {
      let pad = UInt8(config.letterboxPad)
      canvas.withUnsafeMutableBufferPointer { $0.update(repeating: pad) }
    }
    image.pixels.withUnsafeBufferPointer { source in
      canvas.withUnsafeMutableBufferPointer { out in
        resampler.run(
          plan, source: source.baseAddress!, sourceStride: width * 3,
          output: out.baseAddress! + (plan.placeY * side + plan.placeX) * 3,
          outputStride: side * 3)
      }
    }
  }

  /// The colour stage alone (the NV12 round trip, if configured) on `canvas`.
  func convertColour() {
    switch config.chroma {
    case .none: break
    case .nv12Full, .nv12Video: convertThroughNV12()
    }
  }

  /// The normalisation and layout stage alone, from `canvas`, for `PreprocessorSet`.
  func writeTensorFromCanvas(into output: UnsafeMutableBufferPointer<Float>) throws {
    guard output.count >= outputElementCount else {
      throw PreprocessError.outputTooSmall(needed: outputElementCount, got: output.count)
    }
    writeTensor(into: output)
  }

  private func convertThroughNV12() {
    let count = side * side
    if lumaPlane.count < count {
      lumaPlane = [UInt8](repeating: 0, count: count)
      chromaPlane = [UInt8](repeating: 0, count: count / 2)
    }
    let fullRange = config.chroma == .nv12Full
    let toYUV = config.channels == .yuv444
    canvas.withUnsafeMutableBufferPointer { image in
      lumaPlane.withUnsafeMutableBufferPointer { luma in
        chromaPlane.withUnsafeMutableBufferPointer { chroma in
          let image = image.baseAddress!
          let luma = luma.baseAddress!
          let chroma = chroma.baseAddress!
          if fullRange {
            NV12.encodeFullRange(rgb: image, side: side, luma: luma, chroma: chroma)
          } else {
            NV12.encodeVideoRange(rgb: image, side: side, luma: luma, chroma: chroma)
          }
          if toYUV {
            NV12.expandToYUV444(luma: luma, chroma: chroma, side: side, output: image)
          } else if fullRange {
            NV12.decodeFullRange(luma: luma, chroma: chroma, side: side, rgb: image)
          } else {
            NV12.decodeVideoRange(luma: luma, chroma: chroma, side: side, rgb: image)
          }
        }
      }
    }
  }

  /// The fused last pass: table lookup (normalisation) and layout, one write per float.
  private func writeTensor(into output: UnsafeMutableBufferPointer<Float>) {
    let pixelCount = side * side
    let nchw = config.layout == .nchw
    canvas.withUnsafeBufferPointer { image in
      lookup.withUnsafeBufferPointer { table in
        let image = image.baseAddress!
        let out = output.baseAddress!
        // One sequential pass over the canvas writing all three channels (planes for NCHW),
        // rather than one strided pass per channel.
        let values = table.baseAddress!
        let values0 = values
        let values1 = values + 256
        let values2 = values + 512
        let (first, second, third) = (sourceChannel[0], sourceChannel[1], sourceChannel[2])
        if nchw {
          let plane0 = out
          let plane1 = out + pixelCount
          let plane2 = out + 2 * pixelCount
          for pixel in 0..<pixelCount {
            let source = image + 3 &* pixel
            plane0[pixel] = values0[Int(source[first])]
            plane1[pixel] = values1[Int(source[second])]
            plane2[pixel] = values2[Int(source[third])]
          }
        } else {
          for pixel in 0..<pixelCount {
            let source = image + 3 &* pixel
            let target = out + 3 &* pixel
            target[0] = values0[Int(source[first])]
            target[1] = values1[Int(source[second])]
            target[2] = values2[Int(source[third])]
          }
        }
      }
    }
  }
}

/// Why one image could not be preprocessed (recorded as a per-image skip by the pipeline).
public enum PreprocessError: Error, CustomStringConvertible, Equatable {
  /// The decoded image has no pixels.
  case emptyImage(width: Int, height: Int)
  /// `pixels` holds fewer than `width * height * 3` bytes.
  case shortPixelBuffer(width: Int, height: Int, count: Int)
  /// The caller's output buffer is smaller than `outputElementCount`.
  case outputTooSmall(needed: Int, got: Int)
  /// The image is too large or too extreme in aspect for the configured geometry.
  case unsupportedSize(width: Int, height: Int, reason: String)

  /// A message naming the sizes involved.
  public var description: String {
    switch self {
    case .emptyImage(let width, let height):
      return "preprocess: empty image (\(width)×\(height))"
    case .shortPixelBuffer(let width, let height, let count):
      return
        "preprocess: \(width)×\(height) RGB image needs \(width * height * 3) bytes, got \(count)"
    case .outputTooSmall(let needed, let got):
      return "preprocess: output buffer holds \(got) floats, need \(needed)"
    case .unsupportedSize(let width, let height, let reason):
      return "preprocess: cannot handle a \(width)×\(height) image: \(reason)"
    }
  }
}
