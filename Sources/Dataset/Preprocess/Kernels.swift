/// The two passes of each separable resize, on interleaved RGB rows. Wrapping arithmetic (`&+`,
/// `&*`) matches the C originals' `int` behaviour and keeps overflow traps out of the hot loops;
/// every bound is guaranteed by the tables (indices clipped to the image when they were built).
enum Kernels {
  @inline(__always)
  static func clip8(_ value: Int32, shift: Int32) -> UInt8 {
    let shifted = value >> shift
    return UInt8(truncatingIfNeeded: shifted < 0 ? 0 : (shifted > 255 ? 255 : shifted))
  }

  /// Pillow `ImagingResampleHorizontal_8bpc`: rows `firstRow ..< firstRow + rowCount` of the
  /// source (whose first stored column is `firstColumn`) into rows of `axis.count` pixels.
  static func pillowHorizontal(
    source: UnsafePointer<UInt8>, sourceStride: Int, firstRow: Int, rowCount: Int,
    firstColumn: Int, axis: ResampleAxis, output rows: UnsafeMutablePointer<UInt8>,
    outputStride: Int
  ) {
    let half: Int32 = 1 << (ResampleTables.pillowPrecisionBits - 1)
    let shift = ResampleTables.pillowPrecisionBits
    let count = axis.count
    let taps = axis.taps
    axis.lengths.withUnsafeBufferPointer { lengths in
      axis.indices.withUnsafeBufferPointer { indices in
        axis.fixed.withUnsafeBufferPointer { weights in
          for row in 0..<rowCount {
            let input = source + (firstRow + row) * sourceStride
            var output = rows + row * outputStride
            for column in 0..<count {
              let base = column * taps
              var pixel = input + (Int(indices[base]) - firstColumn) * 3
              var red = half
              var green = half
              var blue = half
              for tap in 0..<Int(lengths[column]) {
                let weight = weights[base + tap]
                red &+= Int32(pixel[0]) &* weight
                green &+= Int32(pixel[1]) &* weight
                blue &+= Int32(pixel[2]) &* weight
                pixel += 3
              }
              output[0] = clip8(red, shift: shift)
              output[1] = clip8(green, shift: shift)
              output[2] = clip8(blue, shift: shift)
              output += 3
            }
          }
        }
      }
    }
  }

  /// Pillow `ImagingResampleVertical_8bpc` over the rows the horizontal pass produced, one
  /// output row at a time through an int accumulator row (contiguous, vectorisable).
  static func pillowVertical(
    rows: UnsafePointer<UInt8>, rowLength: Int, rowStride: Int, firstRow: Int, axis: ResampleAxis,
    accumulator: UnsafeMutablePointer<Int32>, output: UnsafeMutablePointer<UInt8>,
    outputStride: Int
  ) {
    let half: Int32 = 1 << (ResampleTables.pillowPrecisionBits - 1)
    let shift = ResampleTables.pillowPrecisionBits
    let taps = axis.taps
    axis.lengths.withUnsafeBufferPointer { lengths in
      axis.indices.withUnsafeBufferPointer { indices in
        axis.fixed.withUnsafeBufferPointer { weights in
          for outRow in 0..<axis.count {
            let base = outRow * taps
            accumulator.update(repeating: half, count: rowLength)
            for tap in 0..<Int(lengths[outRow]) {
              let weight = weights[base + tap]
              let input = rows + (Int(indices[base + tap]) - firstRow) * rowStride
              for element in 0..<rowLength {
                accumulator[element] &+= Int32(input[element]) &* weight
              }
            }
            let target = output + outRow * outputStride
            for element in 0..<rowLength {
              target[element] = clip8(accumulator[element], shift: shift)
            }
          }
        }
      }
    }
  }

  /// OpenCV `HResizeLinear<uchar, int, short>`: two taps, products kept as int (×2048).
  static func openCVHorizontal(
    source: UnsafePointer<UInt8>, sourceStride: Int, firstRow: Int, rowCount: Int,
    axis: ResampleAxis, rows: UnsafeMutablePointer<Int32>
  ) {
    let count = axis.count
    axis.indices.withUnsafeBufferPointer { indices in
      axis.fixed.withUnsafeBufferPointer { weights in
        for row in 0..<rowCount {
          let input = source + (firstRow + row) * sourceStride
          var output = rows + row * count * 3
          for column in 0..<count {
            let first = input + Int(indices[2 * column]) * 3
            let second = input + Int(indices[2 * column + 1]) * 3
            let a = weights[2 * column]
            let b = weights[2 * column + 1]
            output[0] = Int32(first[0]) &* a &+ Int32(second[0]) &* b
            output[1] = Int32(first[1]) &* a &+ Int32(second[1]) &* b
            output[2] = Int32(first[2]) &* a &+ Int32(second[2]) &* b
            output += 3
          }
        }
      }
    }
  }

  /// OpenCV `VResizeLinearVec_32s8u`, the SIMD path cv2 takes for every pixel: each product
  /// is `(weight * (S >> 4)) >> 16` (16-bit multiply-high), then `(sum + 2) >> 2`.
  static func openCVVertical(
    rows: UnsafePointer<Int32>, rowLength: Int, firstRow: Int, axis: ResampleAxis,
    output: UnsafeMutablePointer<UInt8>, outputStride: Int
  ) {
    axis.indices.withUnsafeBufferPointer { indices in
      axis.fixed.withUnsafeBufferPointer { weights in
        for outRow in 0..<axis.count {
          let first = rows + (Int(indices[2 * outRow]) - firstRow) * rowLength
          let second = rows + (Int(indices[2 * outRow + 1]) - firstRow) * rowLength
          let a = weights[2 * outRow]
          let b = weights[2 * outRow + 1]
          let target = output + outRow * outputStride
          for element in 0..<rowLength {
            let sum =
              ((a &* (first[element] >> 4)) >> 16) &+ ((b &* (second[element] >> 4)) >> 16) &+ 2
            target[element] = clip8(sum, shift: 2)
          }
        }
      }
    }
  }

  /// OpenCV `ResizeArea_Invoker`, horizontal half: float sums of weighted source pixels.
  static func floatHorizontal(
    source: UnsafePointer<UInt8>, sourceStride: Int, firstRow: Int, rowCount: Int,
    axis: ResampleAxis, rows: UnsafeMutablePointer<Float>
  ) {
    let count = axis.count
    let taps = axis.taps
    axis.lengths.withUnsafeBufferPointer { lengths in
      axis.indices.withUnsafeBufferPointer { indices in
        axis.floats.withUnsafeBufferPointer { weights in
          for row in 0..<rowCount {
            let input = source + (firstRow + row) * sourceStride
            var output = rows + row * count * 3
            for column in 0..<count {
              let base = column * taps
              var pixel = input + Int(indices[base]) * 3
              var red: Float = 0
              var green: Float = 0
              var blue: Float = 0
              for tap in 0..<Int(lengths[column]) {
                let weight = weights[base + tap]
                red += Float(pixel[0]) * weight
                green += Float(pixel[1]) * weight
                blue += Float(pixel[2]) * weight
                pixel += 3
              }
              output[0] = red
              output[1] = green
              output[2] = blue
              output += 3
            }
          }
        }
      }
    }
  }

  /// OpenCV `ResizeArea_Invoker`, vertical half, then `saturate_cast<uchar>(sum * scale)`.
  static func floatVertical(
    rows: UnsafePointer<Float>, rowLength: Int, firstRow: Int, axis: ResampleAxis,
    scale: Float, roundHalfUp: Bool, accumulator: UnsafeMutablePointer<Float>,
    output: UnsafeMutablePointer<UInt8>, outputStride: Int
  ) {
    let taps = axis.taps
    axis.lengths.withUnsafeBufferPointer { lengths in
      axis.indices.withUnsafeBufferPointer { indices in
        axis.floats.withUnsafeBufferPointer { weights in
          for outRow in 0..<axis.count {
            let base = outRow * taps
            accumulator.update(repeating: 0, count: rowLength)
            for tap in 0..<Int(lengths[outRow]) {
              let weight = weights[base + tap]
              let input = rows + (Int(indices[base + tap]) - firstRow) * rowLength
              for element in 0..<rowLength {
                accumulator[element] += input[element] * weight
              }
            }
            let target = output + outRow * outputStride
            for element in 0..<rowLength {
              let value = accumulator[element] * scale
              let rounded =
                roundHalfUp ? (value + 0.5).rounded(.down) : value.rounded(.toNearestOrEven)
              target[element] = UInt8(min(max(rounded, 0), 255))
            }
          }
        }
      }
    }
  }
}

/// Pillow's two passes over fixed-width tap windows (`ResampleAxis.makeWindows`): every output
/// reads `width` consecutive source samples, the ones outside its own taps with weight 0. The
/// integer sums are the same as the per-length loops' (adding `0 * x` changes nothing, and
/// wrapping `Int32` addition is order-independent), but with the width a constant after
/// inlining the tap loop unrolls, the per-output branch on the tap count disappears, and the
/// vertical pass becomes one vectorisable pass per output row instead of an accumulator row
/// read and written once per tap.
extension Kernels {
  /// The widest window with a specialised kernel; wider windows run the per-length loops.
  static let maximumWindowWidth = 6

  /// `pillowHorizontal` over windows; `axis.windowWidth` must be 1…`maximumWindowWidth`.
  static func pillowHorizontalWindows(
    source: UnsafePointer<UInt8>, sourceStride: Int, firstRow: Int, rowCount: Int,
    firstColumn: Int, axis: ResampleAxis, output rows: UnsafeMutablePointer<UInt8>,
    outputStride: Int
  ) {
    axis.windowStarts.withUnsafeBufferPointer { starts in
      axis.windowFixed.withUnsafeBufferPointer { weights in
        let starts = starts.baseAddress!
        let weights = weights.baseAddress!
        for row in 0..<rowCount {
          let input = source + (firstRow + row) * sourceStride - firstColumn * 3
          let output = rows + row * outputStride
          switch axis.windowWidth {
          case 1: horizontalRow(1, input, starts, weights, axis.count, output)
          case 2: horizontalRow(2, input, starts, weights, axis.count, output)
          case 3: horizontalRow(3, input, starts, weights, axis.count, output)
          case 4: horizontalRow(4, input, starts, weights, axis.count, output)
          case 5: horizontalRow(5, input, starts, weights, axis.count, output)
          default: horizontalRow(6, input, starts, weights, axis.count, output)
          }
        }
      }
    }
  }

  @inline(__always)
  private static func horizontalRow(
    _ width: Int, _ input: UnsafePointer<UInt8>, _ starts: UnsafePointer<Int32>,
    _ weights: UnsafePointer<Int32>, _ count: Int, _ output: UnsafeMutablePointer<UInt8>
  ) {
    let half: Int32 = 1 << (ResampleTables.pillowPrecisionBits - 1)
    let shift = ResampleTables.pillowPrecisionBits
    for column in 0..<count {
      let pixel = input + Int(starts[column]) &* 3
      let weight = weights + column &* width
      var red = half
      var green = half
      var blue = half
      for tap in 0..<width {
        let w = weight[tap]
        red &+= Int32(pixel[3 &* tap]) &* w
        green &+= Int32(pixel[3 &* tap &+ 1]) &* w
        blue &+= Int32(pixel[3 &* tap &+ 2]) &* w
      }
      let target = output + column &* 3
      target[0] = clip8(red, shift: shift)
      target[1] = clip8(green, shift: shift)
      target[2] = clip8(blue, shift: shift)
    }
  }

  /// `pillowVertical` over windows; `axis.windowWidth` must be 1…`maximumWindowWidth`.
  static func pillowVerticalWindows(
    rows: UnsafePointer<UInt8>, rowLength: Int, rowStride: Int, firstRow: Int, axis: ResampleAxis,
    output: UnsafeMutablePointer<UInt8>, outputStride: Int
  ) {
    let width = axis.windowWidth
    axis.windowStarts.withUnsafeBufferPointer { starts in
      axis.windowFixed.withUnsafeBufferPointer { weights in
        for outRow in 0..<axis.count {
          let first = rows + (Int(starts[outRow]) - firstRow) * rowStride
          let w = weights.baseAddress! + outRow * width
          let target = output + outRow * outputStride
          // Rows past the window repeat the first with weight 0 (never read: dead after the
          // width is known), so every case passes six valid pointers.
          func row(_ k: Int) -> UnsafePointer<UInt8> { k < width ? first + k * rowStride : first }
          func weight(_ k: Int) -> Int32 { k < width ? w[k] : 0 }
          let r = (row(0), row(1), row(2), row(3), row(4), row(5))
          let c = (weight(0), weight(1), weight(2), weight(3), weight(4), weight(5))
          switch width {
          case 1: verticalRow(1, r, c, rowLength, target)
          case 2: verticalRow(2, r, c, rowLength, target)
          case 3: verticalRow(3, r, c, rowLength, target)
          case 4: verticalRow(4, r, c, rowLength, target)
          case 5: verticalRow(5, r, c, rowLength, target)
          default: verticalRow(6, r, c, rowLength, target)
          }
        }
      }
    }
  }

  private typealias Six<T> = (T, T, T, T, T, T)

  @inline(__always)
  private static func verticalRow(
    _ width: Int, _ r: Six<UnsafePointer<UInt8>>, _ w: Six<Int32>, _ count: Int,
    _ target: UnsafeMutablePointer<UInt8>
  ) {
    let half: Int32 = 1 << (ResampleTables.pillowPrecisionBits - 1)
    let shift = ResampleTables.pillowPrecisionBits
    for element in 0..<count {
      var sum = half &+ Int32(r.0[element]) &* w.0
      if width > 1 { sum &+= Int32(r.1[element]) &* w.1 }
      if width > 2 { sum &+= Int32(r.2[element]) &* w.2 }
      if width > 3 { sum &+= Int32(r.3[element]) &* w.3 }
      if width > 4 { sum &+= Int32(r.4[element]) &* w.4 }
      if width > 5 { sum &+= Int32(r.5[element]) &* w.5 }
      target[element] = clip8(sum, shift: shift)
    }
  }
}
