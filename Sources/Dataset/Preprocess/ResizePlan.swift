import Foundation

/// Where one source size lands in the output square and with which coefficients; built once per
/// source size and cached by `Preprocessor`.
struct ResizePlan {
  /// The arithmetic of the two passes.
  enum Kernel: Equatable {
    /// Pillow: uint8 → uint8 horizontally, then uint8 → uint8 vertically, 22-bit weights.
    case pillow
    /// OpenCV INTER_LINEAR: uint8 → int (×2048) horizontally, then OpenCV's SIMD vertical
    /// rounding `((b0 * (S0 >> 4)) >> 16 + (b1 * (S1 >> 4)) >> 16 + 2) >> 2`.
    case openCVLinear
    /// OpenCV INTER_AREA: float sums, multiplied by `scale`, rounded half-up (integer 2×2
    /// path) or half-to-even (`saturate_cast`).
    case float(scale: Float, roundHalfUp: Bool)
  }

  let sourceWidth: Int
  let sourceHeight: Int
  let kernel: Kernel
  /// Kept output columns; source indices are absolute.
  private(set) var horizontal: ResampleAxis
  /// Kept output rows; source indices are absolute.
  private(set) var vertical: ResampleAxis
  /// Where the kept block starts in the output square.
  let placeX: Int
  let placeY: Int
  /// False when a letterbox border remains to be padded.
  let coversOutput: Bool
  /// Pillow only: filter columns after rows (see `pillowVerticalFirst`).
  let verticalFirst: Bool
  /// The source rows the horizontal pass must produce.
  let firstSourceRow: Int
  let lastSourceRow: Int
  /// The full resized size and the crop offsets into it (for tests and `inspect`).
  let resizedWidth: Int
  let resizedHeight: Int
  let cropX: Int
  let cropY: Int

  /// The largest resized side accepted: beyond it an image is absurdly thin for the geometry.
  static let maximumResizedSide = 1 << 22

  init(config: PreprocessConfig, width: Int, height: Int) throws {
    let side = config.cropSize
    var regionX = 0
    var regionY = 0
    var regionWidth = width
    var regionHeight = height
    var outWidth = side
    var outHeight = side
    var keepX = 0
    var keepY = 0
    var keepWidth = side
    var keepHeight = side
    var placeX = 0
    var placeY = 0
    switch config.geometry {
    case .resizeCrop:
      // torchvision `_compute_resized_output_size`: int(size * long / short), truncated.
      let size = config.effectiveResizeSize
      let short = min(width, height)
      let long = max(width, height)
      let longSide = Double(size) * Double(long) / Double(short)
      guard longSide < Double(Self.maximumResizedSide) else {
        throw PreprocessError.unsupportedSize(
          width: width, height: height,
          reason: "the long side would be resized to \(Int(longSide)) pixels")
      }
      let resizedLong = Int(longSide)
      (outWidth, outHeight) = width <= height ? (size, resizedLong) : (resizedLong, size)
      guard outWidth >= side, outHeight >= side else {
        throw PreprocessError.unsupportedSize(
          width: width, height: height,
          reason: "resized to \(outWidth)×\(outHeight), smaller than the \(side) crop")
      }
      keepX = Self.cropOffset(outWidth - side, rounding: config.cropRounding)
      keepY = Self.cropOffset(outHeight - side, rounding: config.cropRounding)
    case .centralFraction:
      // tf.image.central_crop: start = int((side - side * fraction) / 2), size = side - 2 start.
      let fraction = config.centralFraction
      regionY = Int((Double(height) - Double(height) * fraction) / 2)
      regionX = Int((Double(width) - Double(width) * fraction) / 2)
      regionHeight = height - 2 * regionY
      regionWidth = width - 2 * regionX
    case .letterbox:
      let ratio = min(Double(side) / Double(width), Double(side) / Double(height))
      outWidth = min(max(Int((Double(width) * ratio).rounded(.toNearestOrEven)), 1), side)
      outHeight = min(max(Int((Double(height) * ratio).rounded(.toNearestOrEven)), 1), side)
      keepWidth = outWidth
      keepHeight = outHeight
      placeX = Int((Double(side - outWidth) / 2 - 0.1).rounded(.toNearestOrEven))
      placeY = Int((Double(side - outHeight) / 2 - 0.1).rounded(.toNearestOrEven))
    }
    try self.init(
      interpolation: config.interpolation, width: width, height: height,
      region: (regionX, regionY, regionWidth, regionHeight), resized: (outWidth, outHeight),
      keep: (keepX, keepY, keepWidth, keepHeight), place: (placeX, placeY), side: side)
  }

  /// A plan that resizes `region` of a `width` × `height` source to `resized`, keeps the block
  /// `keep` of the result and puts it at `place` in a `side` × `side` output.
  init(
    interpolation: PreprocessConfig.Interpolation, width: Int, height: Int,
    region: (x: Int, y: Int, width: Int, height: Int), resized: (width: Int, height: Int),
    keep: (x: Int, y: Int, width: Int, height: Int), place: (x: Int, y: Int), side: Int
  ) throws {
    guard region.width > 0, region.height > 0, resized.width > 0, resized.height > 0 else {
      throw PreprocessError.unsupportedSize(
        width: width, height: height, reason: "nothing left to resize after cropping")
    }
    sourceWidth = width
    sourceHeight = height
    let (regionX, regionY, regionWidth, regionHeight) = region
    let (outWidth, outHeight) = resized
    let (keepX, keepY, keepWidth, keepHeight) = keep
    self.placeX = place.x
    self.placeY = place.y
    coversOutput = keepWidth == side && keepHeight == side
    resizedWidth = outWidth
    resizedHeight = outHeight
    cropX = keepX
    cropY = keepY

    let columns = keepX..<(keepX + keepWidth)
    let rows = keepY..<(keepY + keepHeight)
    // Both axes from one table builder, called with each axis's (in, out, kept outputs,
    // origin), so the two cannot be built with different settings.
    func axes(
      _ build: (_ inSize: Int, _ outSize: Int, _ outputs: Range<Int>, _ origin: Int) -> ResampleAxis
    ) -> (ResampleAxis, ResampleAxis) {
      (
        build(regionWidth, outWidth, columns, regionX),
        build(regionHeight, outHeight, rows, regionY)
      )
    }
    switch interpolation {
    case .pillowBilinear, .pillowBicubic:
      let bicubic = interpolation == .pillowBicubic
      kernel = .pillow
      (horizontal, vertical) = axes {
        ResampleTables.pillow(inSize: $0, outSize: $1, outputs: $2, origin: $3, bicubic: bicubic)
      }
    case .nearest:
      kernel = .pillow
      (horizontal, vertical) = axes(ResampleTables.nearest)
    case .cvLinear, .cvArea:
      let downscale = regionWidth >= outWidth && regionHeight >= outHeight
      let integerFactors =
        downscale && regionWidth % outWidth == 0 && regionHeight % outHeight == 0
      let factorX = regionWidth / outWidth
      let factorY = regionHeight / outHeight
      // OpenCV turns an exact 2× INTER_LINEAR downscale into INTER_AREA's fast path.
      let linearAsArea =
        interpolation == .cvLinear && integerFactors && factorX == 2 && factorY == 2
      if interpolation == .cvLinear && !linearAsArea {
        kernel = .openCVLinear
        (horizontal, vertical) = axes {
          ResampleTables.openCVLinear(inSize: $0, outSize: $1, outputs: $2, origin: $3)
        }
      } else if integerFactors {
        let area = factorX * factorY
        // The 2×2 SIMD path rounds (sum + 2) >> 2; other factors use saturate_cast(sum * 1/area).
        kernel = .float(scale: 1 / Float(area), roundHalfUp: factorX == 2 && factorY == 2)
        // The factor of each axis is its own in / out (factorX, factorY above).
        (horizontal, vertical) = axes {
          ResampleTables.boxSum(inSize: $0, outSize: $1, outputs: $2, origin: $3, factor: $0 / $1)
        }
      } else if downscale {
        kernel = .float(scale: 1, roundHalfUp: false)
        (horizontal, vertical) = axes(ResampleTables.openCVArea)
      } else {
        kernel = .openCVLinear
        (horizontal, vertical) = axes {
          ResampleTables.openCVLinear(
            inSize: $0, outSize: $1, outputs: $2, origin: $3, areaMode: true)
        }
      }
    }
    verticalFirst =
      kernel == .pillow && interpolation != .nearest
      && Self.pillowVerticalFirst(
        width: regionWidth, height: regionHeight, outWidth: outWidth, outHeight: outHeight)
    if kernel == .pillow {
      horizontal.makeWindows()
      vertical.makeWindows()
    }
    let bounds = vertical.sourceBounds
    firstSourceRow = bounds.lower
    lastSourceRow = bounds.upper
  }

  /// The pass order Pillow 13 picks. Not in Pillow's documentation: inferred from Pillow 13.0's
  /// output, which matched this rule bit for bit on 250 random size pairs where the two orders
  /// differ (earlier Pillow versions always filter horizontally first). Tests pin it down.
  static func pillowVerticalFirst(width: Int, height: Int, outWidth: Int, outHeight: Int) -> Bool {
    let shrinks = width > outWidth || height > outHeight
    return shrinks && (height - outHeight) > 2 * (width - outWidth)
  }

  /// Offset of a centred crop that leaves `margin` pixels over.
  static func cropOffset(_ margin: Int, rounding: PreprocessConfig.CropRounding) -> Int {
    switch rounding {
    case .floor:
      return margin / 2
    case .halfToEven:
      return Int((Double(margin) / 2).rounded(.toNearestOrEven))
    }
  }
}
