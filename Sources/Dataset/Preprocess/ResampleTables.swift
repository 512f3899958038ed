import Foundation

/// The taps of a separable resize along one axis: for every kept output index, `lengths[j]`
/// source indices `indices[j * taps + k]` with fixed-point (`fixed`) or float (`floats`)
/// weights. Tables are built for the whole output then sliced to the crop, so every kept output
/// sample is computed with exactly the coefficients the full-size resize would use.
struct ResampleAxis {
  var count = 0
  var taps = 0
  var lengths: [Int32] = []
  var indices: [Int32] = []
  var fixed: [Int32] = []
  var floats: [Float] = []
  /// Pillow kernels: every kept output's taps as one window of `windowWidth` consecutive source
  /// indices from `windowStarts[j]`, weights `windowFixed[j * windowWidth + k]` (zero outside
  /// the output's own taps), all inside `sourceBounds`; 0 when `makeWindows` found none.
  var windowWidth = 0
  var windowStarts: [Int32] = []
  var windowFixed: [Int32] = []

  init() {}

  init(count: Int, taps: Int) {
    self.count = count
    self.taps = taps
    lengths = Array(repeating: 0, count: count)
    indices = Array(repeating: 0, count: count * taps)
    fixed = Array(repeating: 0, count: count * taps)
    floats = Array(repeating: 0, count: count * taps)
  }

  /// Fills the window tables from the fixed-point taps when every output's taps are
  /// consecutive and the widest fits inside `sourceBounds`; otherwise leaves `windowWidth` 0.
  mutating func makeWindows() {
    guard count > 0 else { return }
    let (lower, upper) = sourceBounds
    var width = 0
    for j in 0..<count {
      let length = Int(lengths[j])
      guard length >= 1 else { return }
      for k in 0..<length where Int(indices[j * taps + k]) != Int(indices[j * taps]) + k {
        return
      }
      width = max(width, length)
    }
    guard upper - lower + 1 >= width else { return }
    var starts = [Int32](repeating: 0, count: count)
    var weights = [Int32](repeating: 0, count: count * width)
    for j in 0..<count {
      let first = Int(indices[j * taps])
      // Slide the window left at the upper edge so it never reads past `upper`.
      let start = max(lower, min(first, upper - width + 1))
      starts[j] = Int32(start)
      for k in 0..<Int(lengths[j]) {
        weights[j * width + first - start + k] = fixed[j * taps + k]
      }
    }
    windowStarts = starts
    windowFixed = weights
    windowWidth = width
  }

  /// The smallest and largest source index any kept output reads.
  var sourceBounds: (lower: Int, upper: Int) {
    var lower = Int.max
    var upper = Int.min
    for j in 0..<count {
      for k in 0..<Int(lengths[j]) {
        let index = Int(indices[j * taps + k])
        lower = min(lower, index)
        upper = max(upper, index)
      }
    }
    return (lower, upper)
  }
}

/// Coefficient tables that reproduce each library's resize arithmetic.
enum ResampleTables {
  /// Pillow's `PRECISION_BITS` (`32 - 8 - 2`) for 8-bit images.
  static let pillowPrecisionBits: Int32 = 22

  /// Pillow `precompute_coeffs` + `normalize_coeffs_8bpc` (libImaging/Resample.c): the filter
  /// support is widened by the downscale factor, the window is `[center ± support]` rounded by
  /// `(int)(x + 0.5)` and clipped to the image, weights are normalised to sum 1 in double, then
  /// rounded away from zero to 22-bit integers.
  static func pillow(
    inSize: Int, outSize: Int, outputs: Range<Int>, origin: Int, bicubic: Bool
  ) -> ResampleAxis {
    let filterSupport = bicubic ? 2.0 : 1.0
    let scale = Double(inSize) / Double(outSize)
    let filterScale = max(scale, 1.0)
    let support = filterSupport * filterScale
    let taps = Int(support.rounded(.up)) * 2 + 1
    var axis = ResampleAxis(count: outputs.count, taps: taps)
    let inverse = 1.0 / filterScale
    var weights = [Double](repeating: 0, count: taps)
    for (j, out) in outputs.enumerated() {
      let center = (Double(out) + 0.5) * scale
      // C's (int) cast truncates toward zero; negatives are clipped to 0 right after.
      let first = max(Int(center - support + 0.5), 0)
      let length = min(Int(center + support + 0.5), inSize) - first
      var total = 0.0
      for k in 0..<length {
        let x = (Double(k + first) - center + 0.5) * inverse
        let w = bicubic ? bicubicFilter(x) : bilinearFilter(x)
        weights[k] = w
        total += w
      }
      axis.lengths[j] = Int32(length)
      for k in 0..<taps {
        var w = k < length ? weights[k] : 0
        if k < length && total != 0 { w /= total }
        let scaled = w * Double(1 << pillowPrecisionBits)
        axis.fixed[j * taps + k] = Int32(w < 0 ? -0.5 + scaled : 0.5 + scaled)
        axis.floats[j * taps + k] = Float(w)
        axis.indices[j * taps + k] = Int32(origin + first + min(k, max(length - 1, 0)))
      }
    }
    return axis
  }

  private static func bilinearFilter(_ value: Double) -> Double {
    let x = abs(value)
    return x < 1 ? 1 - x : 0
  }

  private static func bicubicFilter(_ value: Double) -> Double {
    let a = -0.5
    let x = abs(value)
    if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
    if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
    return 0
  }

  /// Pillow's NEAREST (`ImagingScaleAffine`): output `i` reads source `floor((i + 0.5) * in /
  /// out)`, as one tap of weight 1.0 in Pillow's fixed point.
  static func nearest(inSize: Int, outSize: Int, outputs: Range<Int>, origin: Int) -> ResampleAxis {
    var axis = ResampleAxis(count: outputs.count, taps: 1)
    let scale = Double(inSize) / Double(outSize)
    var position = 0.5 * scale
    for out in 0..<outputs.upperBound {
      // Pillow accumulates the coordinate (xo += a[0]) rather than multiplying.
      let index = min(max(Int(position.rounded(.down)), 0), inSize - 1)
      position += scale
      guard out >= outputs.lowerBound else { continue }
      let j = out - outputs.lowerBound
      axis.lengths[j] = 1
      axis.indices[j] = Int32(origin + index)
      axis.fixed[j] = 1 << pillowPrecisionBits
      axis.floats[j] = 1
    }
    return axis
  }

  /// OpenCV `INTER_LINEAR` on uint8 (imgproc/resize.cpp): `fx = (float)((dx + 0.5) * scale -
  /// 0.5)`, `sx = floor(fx)`, weights `saturate_cast<short>((1 - fx) * 2048)` and
  /// `saturate_cast<short>(fx * 2048)` (round half to even); the two source indices are
  /// clamped to the image but the fractions are not (OpenCV 5 behaviour, verified against
  /// cv2 5.0 bit for bit). With `areaMode` the fractions follow OpenCV's `INTER_AREA` upscale
  /// rule instead: `sx = floor(dx * scale)`, `fx = (dx + 1) - (sx + 1) / scale`, wrapped to
  /// [0, 1).
  static func openCVLinear(
    inSize: Int, outSize: Int, outputs: Range<Int>, origin: Int, areaMode: Bool = false
  ) -> ResampleAxis {
    var axis = ResampleAxis(count: outputs.count, taps: 2)
    let inverseScale = Double(outSize) / Double(inSize)
    let scale = 1.0 / inverseScale
    for (j, out) in outputs.enumerated() {
      var source: Int
      var fraction: Float
      if areaMode {
        source = Int((Double(out) * scale).rounded(.down))
        fraction = Float(Double(out + 1) - Double(source + 1) * inverseScale)
        fraction = fraction <= 0 ? 0 : fraction - fraction.rounded(.down)
      } else {
        let position = Float((Double(out) + 0.5) * scale - 0.5)
        source = Int(position.rounded(.down))
        fraction = position - Float(source)
      }
      let first = Int32(min(max(source, 0), inSize - 1))
      let second = Int32(min(max(source + 1, 0), inSize - 1))
      axis.lengths[j] = 2
      axis.indices[2 * j] = first + Int32(origin)
      axis.indices[2 * j + 1] = second + Int32(origin)
      axis.fixed[2 * j] = Int32(((1 - fraction) * 2048).rounded(.toNearestOrEven))
      axis.fixed[2 * j + 1] = Int32((fraction * 2048).rounded(.toNearestOrEven))
      axis.floats[2 * j] = 1 - fraction
      axis.floats[2 * j + 1] = fraction
    }
    return axis
  }

  /// OpenCV `computeResizeAreaTab`: output `dx` covers source `[dx * scale, (dx + 1) * scale)`;
  /// each source pixel weighs its overlap divided by the cell width, in float.
  static func openCVArea(inSize: Int, outSize: Int, outputs: Range<Int>, origin: Int)
    -> ResampleAxis
  {
    let scale = Double(inSize) / Double(outSize)
    let taps = Int(scale.rounded(.up)) + 2
    var axis = ResampleAxis(count: outputs.count, taps: taps)
    for (j, out) in outputs.enumerated() {
      let start = Double(out) * scale
      let end = start + scale
      let cellWidth = min(scale, Double(inSize) - start)
      let last = min(Int(end.rounded(.down)), inSize - 1)
      let firstWhole = min(Int(start.rounded(.up)), last)
      var entries: [(Int, Float)] = []
      if Double(firstWhole) - start > 1e-3 {
        entries.append((firstWhole - 1, Float((Double(firstWhole) - start) / cellWidth)))
      }
      for sx in firstWhole..<max(firstWhole, last) {
        entries.append((sx, Float(1.0 / cellWidth)))
      }
      if end - Double(last) > 1e-3 {
        entries.append((last, Float(min(min(end - Double(last), 1.0), cellWidth) / cellWidth)))
      }
      axis.lengths[j] = Int32(entries.count)
      for (k, entry) in entries.prefix(taps).enumerated() {
        axis.indices[j * taps + k] = Int32(origin + entry.0)
        axis.floats[j * taps + k] = entry.1
      }
    }
    return axis
  }

  /// OpenCV's integer-factor area path (`resizeAreaFast_`): a plain sum of `factor` source
  /// pixels per axis; the caller divides by `factor²`.
  static func boxSum(
    inSize: Int, outSize: Int, outputs: Range<Int>, origin: Int, factor: Int
  ) -> ResampleAxis {
    var axis = ResampleAxis(count: outputs.count, taps: factor)
    for (j, out) in outputs.enumerated() {
      axis.lengths[j] = Int32(factor)
      for k in 0..<factor {
        axis.indices[j * factor + k] = Int32(origin + min(out * factor + k, inSize - 1))
        axis.floats[j * factor + k] = 1
      }
    }
    return axis
  }
}
