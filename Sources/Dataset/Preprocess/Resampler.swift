/// Runs a `ResizePlan` with scratch rows that only grow, so steady state allocates nothing.
final class Resampler {
  private var rows8: [UInt8] = []
  private var rows32: [Int32] = []
  private var rowsFloat: [Float] = []
  private var accumulator32: [Int32] = []
  private var accumulatorFloat: [Float] = []

  /// Writes the plan's kept block to `output` (row stride `outputStride` bytes).
  func run(
    _ plan: ResizePlan, source: UnsafePointer<UInt8>, sourceStride: Int,
    output: UnsafeMutablePointer<UInt8>, outputStride: Int
  ) {
    let rowCount = plan.lastSourceRow - plan.firstSourceRow + 1
    let rowLength = plan.horizontal.count * 3
    accumulator32.growScratch(to: rowLength)
    accumulatorFloat.growScratch(to: rowLength)
    switch plan.kernel {
    case .pillow where plan.verticalFirst:
      // Pillow 13 resamples vertically first when that is cheaper; the uint8 rounding between
      // passes makes the order visible, so follow it. Only the source columns the kept
      // outputs read are filtered.
      let (firstColumn, lastColumn) = plan.horizontal.sourceBounds
      let columnLength = (lastColumn - firstColumn + 1) * 3
      let keptRows = plan.vertical.count
      rows8.growScratch(to: keptRows * columnLength)
      accumulator32.growScratch(to: columnLength)
      rows8.withUnsafeMutableBufferPointer { rows in
        accumulator32.withUnsafeMutableBufferPointer { accumulator in
          self.pillowVertical(
            rows: source + firstColumn * 3, rowLength: columnLength, rowStride: sourceStride,
            firstRow: 0, axis: plan.vertical, accumulator: accumulator.baseAddress!,
            output: rows.baseAddress!, outputStride: columnLength)
          self.pillowHorizontal(
            source: rows.baseAddress!, sourceStride: columnLength, firstRow: 0,
            rowCount: keptRows, firstColumn: firstColumn, axis: plan.horizontal,
            output: output, outputStride: outputStride)
        }
      }
    case .pillow:
      rows8.growScratch(to: rowCount * rowLength)
      rows8.withUnsafeMutableBufferPointer { rows in
        accumulator32.withUnsafeMutableBufferPointer { accumulator in
          self.pillowHorizontal(
            source: source, sourceStride: sourceStride, firstRow: plan.firstSourceRow,
            rowCount: rowCount, firstColumn: 0, axis: plan.horizontal,
            output: rows.baseAddress!, outputStride: rowLength)
          self.pillowVertical(
            rows: rows.baseAddress!, rowLength: rowLength, rowStride: rowLength,
            firstRow: plan.firstSourceRow, axis: plan.vertical,
            accumulator: accumulator.baseAddress!, output: output, outputStride: outputStride)
        }
      }
    case .openCVLinear:
      rows32.growScratch(to: rowCount * rowLength)
      rows32.withUnsafeMutableBufferPointer { rows in
        Kernels.openCVHorizontal(
          source: source, sourceStride: sourceStride, firstRow: plan.firstSourceRow,
          rowCount: rowCount, axis: plan.horizontal, rows: rows.baseAddress!)
        Kernels.openCVVertical(
          rows: rows.baseAddress!, rowLength: rowLength, firstRow: plan.firstSourceRow,
          axis: plan.vertical, output: output, outputStride: outputStride)
      }
    case .float(let scale, let roundHalfUp):
      rowsFloat.growScratch(to: rowCount * rowLength)
      rowsFloat.withUnsafeMutableBufferPointer { rows in
        accumulatorFloat.withUnsafeMutableBufferPointer { accumulator in
          Kernels.floatHorizontal(
            source: source, sourceStride: sourceStride, firstRow: plan.firstSourceRow,
            rowCount: rowCount, axis: plan.horizontal, rows: rows.baseAddress!)
          Kernels.floatVertical(
            rows: rows.baseAddress!, rowLength: rowLength, firstRow: plan.firstSourceRow,
            axis: plan.vertical, scale: scale, roundHalfUp: roundHalfUp,
            accumulator: accumulator.baseAddress!, output: output, outputStride: outputStride)
        }
      }
    }
  }

  /// Whether the windowed kernels run; tests turn them off to compare with the per-length
  /// loops.
  var usesWindows = true

  private func pillowHorizontal(
    source: UnsafePointer<UInt8>, sourceStride: Int, firstRow: Int, rowCount: Int,
    firstColumn: Int, axis: ResampleAxis, output: UnsafeMutablePointer<UInt8>, outputStride: Int
  ) {
    if usesWindows && (1...Kernels.maximumWindowWidth).contains(axis.windowWidth) {
      Kernels.pillowHorizontalWindows(
        source: source, sourceStride: sourceStride, firstRow: firstRow, rowCount: rowCount,
        firstColumn: firstColumn, axis: axis, output: output, outputStride: outputStride)
    } else {
      Kernels.pillowHorizontal(
        source: source, sourceStride: sourceStride, firstRow: firstRow, rowCount: rowCount,
        firstColumn: firstColumn, axis: axis, output: output, outputStride: outputStride)
    }
  }

  private func pillowVertical(
    rows: UnsafePointer<UInt8>, rowLength: Int, rowStride: Int, firstRow: Int, axis: ResampleAxis,
    accumulator: UnsafeMutablePointer<Int32>, output: UnsafeMutablePointer<UInt8>,
    outputStride: Int
  ) {
    if usesWindows && (1...Kernels.maximumWindowWidth).contains(axis.windowWidth) {
      Kernels.pillowVerticalWindows(
        rows: rows, rowLength: rowLength, rowStride: rowStride, firstRow: firstRow, axis: axis,
        output: output, outputStride: outputStride)
    } else {
      Kernels.pillowVertical(
        rows: rows, rowLength: rowLength, rowStride: rowStride, firstRow: firstRow, axis: axis,
        accumulator: accumulator, output: output, outputStride: outputStride)
    }
  }

  /// Resizes the whole image to `width` × `height` with one library's arithmetic (no crop);
  /// the building block the geometry uses, exposed for tests and benchmarks.
  static func resize(
    _ image: RGBImage, width: Int, height: Int,
    interpolation: PreprocessConfig.Interpolation, using resampler: Resampler = Resampler()
  ) throws -> RGBImage {
    guard image.width > 0, image.height > 0, image.pixels.count >= image.width * image.height * 3
    else {
      throw PreprocessError.emptyImage(width: image.width, height: image.height)
    }
    let plan = try ResizePlan(
      interpolation: interpolation, width: image.width, height: image.height,
      region: (0, 0, image.width, image.height), resized: (width, height),
      keep: (0, 0, width, height), place: (0, 0), side: max(width, height))
    var result = RGBImage(
      width: width, height: height, pixels: [UInt8](repeating: 0, count: width * height * 3))
    image.pixels.withUnsafeBufferPointer { source in
      result.pixels.withUnsafeMutableBufferPointer { out in
        resampler.run(
          plan, source: source.baseAddress!, sourceStride: image.width * 3,
          output: out.baseAddress!, outputStride: width * 3)
      }
    }
    return result
  }
}
