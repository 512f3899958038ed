import Foundation

/// How a clipping threshold is chosen from a tensor's calibration statistics.
public enum CalibrationMethod: String, Sendable, CaseIterable {
  /// The largest magnitude seen.
  case max
  /// The given percentile of |x| (default 99.995 %), read from the histogram.
  case percentile
  /// TensorRT's entropy calibration: the threshold minimising KL(P‖Q) over the histogram
  /// (see `CalibrationAlgorithms.klThreshold`).
  case kl
  /// The threshold minimising the expected squared quantisation error over the histogram.
  case mse

  /// Whether the method reads the |x| histogram (`percentile`, `kl`, `mse`) rather than the
  /// exact range alone (`max`). Observers created without histograms refuse these methods.
  public var needsHistogram: Bool { self != .max }
}

/// Something calibration noticed that does not stop it but must be reported.
public struct CalibrationWarning: Equatable, Sendable, CustomStringConvertible {
  /// The tensor concerned, or nil for a session-wide warning.
  public let tensor: String?
  /// What happened and what was done about it.
  public let message: String

  /// The warning as one line, prefixed by the tensor name.
  public var description: String { tensor.map { "tensor '\($0)': \(message)" } ?? message }
}

/// Accumulates one tensor's statistics over calibration batches: the exact running minimum
/// and maximum, and a histogram of |x| with `binCount` equal bins over `[0, range)`.
///
/// The range is fixed by the first batch holding a non-zero value (its max |x|). When a later
/// batch exceeds it, the range grows by the smallest integer factor `k` that covers the new
/// maximum and every `k` old bins merge into one new bin: old edges stay new edges, so no count
/// is ever split or moved to a wrong bin, at the price of coarser bins (at most `k`×) than a
/// two-pass calibration would give. A jump of more than `binCount`× puts all earlier mass in
/// bin 0, where it belongs at the new resolution. Values equal to the range fall in the last
/// bin.
///
/// An observer created with `collectsHistogram: false` keeps the range only (the histogram
/// stays empty, `histogramRange` 0) and `threshold` refuses the histogram methods: filling
/// 2048 bins for every activation is most of calibration's cost and `max` never reads them.
/// `observe` allocates nothing.
public struct TensorObserver: Sendable {
  /// The tensor's name, used in errors and warnings.
  public let name: String
  /// Whether `observe` fills the histogram (needed by `percentile`, `kl` and `mse`).
  public let collectsHistogram: Bool
  /// The histogram bin counts over `[0, histogramRange)`.
  public private(set) var histogram: [Int64]
  /// The upper edge of the histogram (0 until a non-zero value is seen).
  public private(set) var histogramRange: Double = 0
  /// The smallest value seen (`+inf` before any data).
  public private(set) var minimum: Float = .infinity
  /// The largest value seen (`-inf` before any data).
  public private(set) var maximum: Float = -.infinity
  /// Batches observed.
  public private(set) var batchCount = 0
  /// Values observed.
  public private(set) var elementCount: Int64 = 0
  // Zeros seen while the range is still 0; they go to bin 0 once a range exists.
  private var pendingZeros: Int64 = 0

  /// The number of histogram bins TensorRT's entropy calibrator uses.
  public static let defaultBinCount = 2048

  /// Creates an empty observer; with `collectsHistogram` false it records the exact range
  /// only and serves `max` alone.
  public init(
    name: String, binCount: Int = TensorObserver.defaultBinCount, collectsHistogram: Bool = true
  ) {
    self.name = name
    self.collectsHistogram = collectsHistogram
    histogram = [Int64](repeating: 0, count: Swift.max(binCount, 1))
  }

  /// The width of one histogram bin.
  public var binWidth: Double { histogramRange / Double(histogram.count) }

  /// The largest magnitude seen.
  public var maxMagnitude: Float { Swift.max(abs(minimum), abs(maximum)) }

  /// Adds one batch of values. NaN or infinity throws an error naming the tensor, the batch
  /// and the element, and leaves the observer unchanged.
  public mutating func observe(_ values: UnsafeBufferPointer<Float>) throws {
    let (low, high, finite) = Self.range(of: values)
    guard finite else {
      // Rare: the vector pass only knows something is not finite; find the first one.
      let index = values.firstIndex { !$0.isFinite } ?? 0
      throw QuantizationError.nonFinite(
        tensor: name, batch: batchCount, index: index, value: values[index])
    }
    batchCount += 1
    guard !values.isEmpty else { return }
    minimum = Swift.min(minimum, low)
    maximum = Swift.max(maximum, high)
    elementCount += Int64(values.count)
    guard collectsHistogram else { return }
    let batchMax = Double(Swift.max(abs(low), abs(high)))
    if batchMax > histogramRange {
      grow(toCover: batchMax)
    }
    if histogramRange == 0 {
      pendingZeros += Int64(values.count)
      return
    }
    let bins = histogram.count
    let perUnit = Double(bins) / histogramRange
    histogram.withUnsafeMutableBufferPointer { h in
      for v in values {
        h[Swift.min(Int(Double(abs(v)) * perUnit), bins - 1)] += 1
      }
    }
  }

  /// The minimum and maximum of `values` and whether all are finite, in one branch-free
  /// vector pass: `v − v` is 0 for a finite `v` and NaN for NaN or ±infinity, so the sum of
  /// those differences is NaN exactly when some value is not finite. (The minimum and
  /// maximum are meaningless then, and unused.)
  static func range(of values: UnsafeBufferPointer<Float>) -> (
    minimum: Float, maximum: Float, finite: Bool
  ) {
    typealias Vector = SIMD16<Float>
    let width = Vector.scalarCount
    guard let base = values.baseAddress else { return (.infinity, -.infinity, true) }
    let count = values.count
    var lowVector = Vector(repeating: .infinity)
    var highVector = Vector(repeating: -.infinity)
    var poison = Vector.zero
    let raw = UnsafeRawPointer(base)
    var i = 0
    while i + width <= count {
      let v = raw.loadUnaligned(
        fromByteOffset: i * MemoryLayout<Float>.stride, as: Vector.self)
      lowVector.replace(with: v, where: v .< lowVector)
      highVector.replace(with: v, where: v .> highVector)
      poison += v - v
      i += width
    }
    var low = lowVector.min()
    var high = highVector.max()
    var tail: Float = 0
    while i < count {
      let v = base[i]
      low = Swift.min(low, v)
      high = Swift.max(high, v)
      tail += v - v
      i += 1
    }
    return (low, high, !(poison.sum() + tail).isNaN)
  }

  private mutating func grow(toCover magnitude: Double) {
    if histogramRange == 0 {
      histogramRange = magnitude
      histogram[0] += pendingZeros
      pendingZeros = 0
      return
    }
    let ratio = magnitude / histogramRange
    if ratio >= Double(histogram.count) {
      // Every old value is below the new bin width: all the mass belongs to bin 0. (This
      // also keeps a huge ratio from overflowing the integer factor.)
      let total = histogram.reduce(0, +)
      for index in histogram.indices { histogram[index] = 0 }
      histogram[0] = total
      histogramRange = magnitude
      return
    }
    var factor = Int(ratio.rounded(.up))
    // The last bin holds values equal to the range; keep strictly above to stay in range.
    while Double(factor) * histogramRange < magnitude { factor += 1 }
    factor = Swift.max(factor, 2)
    var merged = [Int64](repeating: 0, count: histogram.count)
    for (index, count) in histogram.enumerated() {
      merged[index / factor] += count
    }
    histogram = merged
    histogramRange *= Double(factor)
  }

  /// The clipping threshold by `method`; `percentile` is used only by `.percentile`.
  /// Constant and all-zero tensors add a warning to `warnings` (all methods then agree on
  /// the constant's magnitude).
  public func threshold(
    _ method: CalibrationMethod, percentile: Double = 99.995,
    warnings: inout [CalibrationWarning]
  ) throws -> Float {
    guard elementCount > 0 else {
      throw QuantizationError.noCalibrationData("tensor '\(name)' saw no values")
    }
    if method.needsHistogram && !collectsHistogram {
      throw QuantizationError.invalidParameter(
        "tensor '\(name)': calibration method '\(method.rawValue)' reads the |x| histogram, but "
          + "these statistics were collected without histograms (range only, for 'max'); "
          + "observe with histograms to use it")
    }
    if maximum == 0, minimum == 0 {
      warnings.append(
        CalibrationWarning(
          tensor: name, message: "all calibration values are 0; threshold 0 (scale 1)"))
      return 0
    }
    if minimum == maximum {
      warnings.append(
        CalibrationWarning(
          tensor: name,
          message: "constant tensor (every value \(minimum)); threshold = its magnitude"))
      return maxMagnitude
    }
    switch method {
    case .max:
      return maxMagnitude
    case .percentile:
      return Float(
        try CalibrationAlgorithms.percentileThreshold(
          histogram, binWidth: binWidth, percentile: percentile))
    case .kl:
      return Float(try CalibrationAlgorithms.klThreshold(histogram, binWidth: binWidth))
    case .mse:
      return Float(CalibrationAlgorithms.mseThreshold(histogram, binWidth: binWidth))
    }
  }
}

/// The threshold searches on a histogram of |x| (`histogram[j]` counts values in
/// `[j·w, (j+1)·w)`), exposed for testing against independent implementations.
public enum CalibrationAlgorithms {
  /// The upper edge of the first bin at which the cumulative count reaches `percentile` % of
  /// the total, so the exact (inverted-CDF) percentile lies within one bin below it.
  public static func percentileThreshold(
    _ histogram: [Int64], binWidth: Double, percentile: Double
  ) throws -> Double {
    guard percentile > 0, percentile <= 100 else {
      throw QuantizationError.invalidParameter("percentile \(percentile) is not in (0, 100]")
    }
    let total = histogram.reduce(0, +)
    guard total > 0 else { throw QuantizationError.noCalibrationData("empty histogram") }
    let target = percentile / 100 * Double(total)
    var cumulative: Int64 = 0
    for (j, count) in histogram.enumerated() {
      cumulative += count
      if Double(cumulative) >= target { return Double(j + 1) * binWidth }
    }
    return Double(histogram.count) * binWidth
  }

  /// Entropy calibration as NVIDIA publishes it for TensorRT's entropy calibrator (GTC 2017
  /// "8-bit Inference with TensorRT"; `_compute_amax_entropy` in TensorRT's
  /// pytorch-quantization), on a histogram of |x|:
  ///
  /// 1. `hist[0]` is replaced by `hist[1]`. Bin 0 holds every exact zero — after a ReLU or
  ///    ReLU6 half the tensor or more — and no threshold represents zero better than another;
  ///    left in, that spike, spread over the merged bins of Q, outweighs everything else and
  ///    the search always stops at `i = 2·levels − 1`, the last candidate with one bin per
  ///    level (it clipped EfficientNet-Lite0's ReLU6 outputs at 0.74 instead of ≈ 6).
  /// 2. For each `i` in `levels…bins`: P = `hist[0..<i]` with the outliers `hist[i...]` added
  ///    to its last bin; Q = `hist[0..<i]` cut into `levels` equal ranges (bin `j` goes to
  ///    level `⌊j·levels / i⌋`), each level's count spread evenly over its non-zero bins, 0 on
  ///    the zero bins; KL(P‖Q) of the normalised distributions (no smoothing: a Q of 0 under a
  ///    P > 0, i.e. outliers beyond an empty last bin, rules the candidate out).
  /// 3. The threshold is the upper edge `i·w` of the minimising `i`, the last one on ties.
  ///
  /// A histogram whose only mass is in bin 0 (nothing left after step 1) has no candidate and
  /// keeps the full range `bins·w`.
  public static func klThreshold(
    _ histogram: [Int64], binWidth: Double, levels: Int = 128
  ) throws -> Double {
    let divergences = try klDivergences(histogram, levels: levels)
    var best = (index: histogram.count, divergence: Double.infinity)
    for (offset, divergence) in divergences.enumerated() where divergence <= best.divergence {
      best = (levels + offset, divergence)
    }
    return Double(best.index) * binWidth
  }

  /// KL(P‖Q) of every candidate `i` in `levels…bins` (element `i − levels`; infinity for a
  /// candidate ruled out), steps 1 and 2 of `klThreshold`.
  static func klDivergences(_ histogram: [Int64], levels: Int = 128) throws -> [Double] {
    let bins = histogram.count
    guard bins >= levels, levels > 0, bins >= 2 else {
      throw QuantizationError.invalidParameter(
        "KL calibration needs at least \(Swift.max(levels, 2)) bins, has \(bins)")
    }
    guard histogram.contains(where: { $0 > 0 }) else {
      throw QuantizationError.noCalibrationData("empty histogram")
    }
    var counts = histogram.map(Double.init)
    counts[0] = counts[1]
    var suffix = [Double](repeating: 0, count: bins + 1)
    for j in stride(from: bins - 1, through: 0, by: -1) { suffix[j] = suffix[j + 1] + counts[j] }
    let total = suffix[0]
    var divergences = [Double](repeating: .infinity, count: bins - levels + 1)
    guard total > 0 else { return divergences }
    var levelSum = [Double](repeating: 0, count: levels)
    var levelMembers = [Int](repeating: 0, count: levels)
    counts.withUnsafeBufferPointer { h in
      for i in levels...bins {
        let outliers = suffix[i]
        let inside = total - outliers
        // Q has no mass, or P's last bin holds outliers where Q is 0: KL is infinite.
        if inside <= 0 || (outliers > 0 && h[i - 1] == 0) { continue }
        for level in 0..<levels {
          levelSum[level] = 0
          levelMembers[level] = 0
        }
        for j in 0..<i where h[j] != 0 {
          let level = j * levels / i
          levelSum[level] += h[j]
          levelMembers[level] += 1
        }
        // Σ p log(p / q) with p = P / total and q = Q / inside.
        var divergence = 0.0
        for j in 0..<i {
          let pj = j == i - 1 ? h[j] + outliers : h[j]
          guard pj > 0 else { continue }
          let level = j * levels / i
          let qj = levelSum[level] / Double(levelMembers[level])
          let p = pj / total
          divergence += p * log(p / (qj / inside))
        }
        divergences[i - levels] = divergence
      }
    }
    return divergences
  }

  /// The threshold `T = i·w` (`i` in `1…bins`) minimising the expected squared error of
  /// symmetric int8 quantisation with step `Δ = T / 127`, each bin represented by its centre
  /// `c_j`: values below `T` cost the uniform rounding noise `Δ²/12`, values above cost the
  /// clipping error `(c_j − T)²`. The first minimum wins.
  public static func mseThreshold(_ histogram: [Int64], binWidth: Double, levels: Double = 127)
    -> Double
  {
    let bins = histogram.count
    var best = (index: bins, error: Double.infinity)
    var below: Int64 = 0
    for i in 1...bins {
      below += histogram[i - 1]
      let t = Double(i) * binWidth
      let step = t / levels
      var error = Double(below) * step * step / 12
      for j in i..<bins where histogram[j] != 0 {
        let d = (Double(j) + 0.5) * binWidth - t
        error += Double(histogram[j]) * d * d
      }
      if error < best.error { best = (i, error) }
    }
    return Double(best.index) * binWidth
  }
}

/// One calibration run over a model's tensors: feed each batch's tensors, close the batch
/// with its image count, then read thresholds by method.
public struct CalibrationSession: Sendable {
  /// The observers, in the order the names were given.
  public private(set) var observers: [TensorObserver]
  /// Images the user asked to calibrate on.
  public let requestedImageCount: Int
  /// Images actually seen so far.
  public private(set) var imageCount = 0
  /// Whether the observers fill histograms; without them only `max` thresholds exist.
  public let collectsHistograms: Bool
  private let indexByName: [String: Int]

  /// Creates observers for `tensorNames` (unique). `collectsHistograms` false keeps only each
  /// tensor's range: `thresholds(.max)` is unchanged, the histogram methods throw.
  public init(
    tensorNames: [String], requestedImageCount: Int,
    binCount: Int = TensorObserver.defaultBinCount, collectsHistograms: Bool = true
  ) throws {
    var index: [String: Int] = [:]
    for (i, name) in tensorNames.enumerated() {
      guard index.updateValue(i, forKey: name) == nil else {
        throw QuantizationError.invalidParameter("calibration tensor '\(name)' listed twice")
      }
    }
    indexByName = index
    self.collectsHistograms = collectsHistograms
    observers = tensorNames.map {
      TensorObserver(name: $0, binCount: binCount, collectsHistogram: collectsHistograms)
    }
    self.requestedImageCount = requestedImageCount
  }

  /// Adds one batch of the named tensor.
  public mutating func observe(_ name: String, _ values: UnsafeBufferPointer<Float>) throws {
    guard let i = indexByName[name] else {
      throw QuantizationError.invalidParameter("calibration tensor '\(name)' is not observed")
    }
    try observers[i].observe(values)
  }

  /// Records that a batch of `images` images has been fed.
  public mutating func endBatch(images: Int) {
    imageCount += images
  }

  /// Thresholds for every tensor by `method`, with the warnings that apply (fewer images
  /// than requested, constant or all-zero tensors). Throws when no image was seen or a
  /// tensor never received data.
  public func thresholds(_ method: CalibrationMethod, percentile: Double = 99.995) throws
    -> (thresholds: [String: Float], warnings: [CalibrationWarning])
  {
    guard imageCount > 0 else {
      throw QuantizationError.noCalibrationData(
        "no calibration image was seen (\(requestedImageCount) requested)")
    }
    var warnings: [CalibrationWarning] = []
    if imageCount < requestedImageCount {
      warnings.append(
        CalibrationWarning(
          tensor: nil,
          message:
            "asked for \(requestedImageCount) calibration images, only \(imageCount) were"
            + " available; calibrated on \(imageCount)"))
    }
    var result: [String: Float] = [:]
    for observer in observers {
      result[observer.name] = try observer.threshold(
        method, percentile: percentile, warnings: &warnings)
    }
    return (result, warnings)
  }
}

/// The outcome of choosing among calibration methods.
public struct CalibrationSelection: Sendable {
  /// The method kept.
  public let method: CalibrationMethod
  /// Its thresholds.
  public let thresholds: [String: Float]
  /// The cosine similarity every candidate reached, in candidate order (NaN when it failed).
  public let similarities: [(method: CalibrationMethod, cosine: Double)]
  /// Candidates that could not be evaluated.
  public let warnings: [CalibrationWarning]
}

extension CalibrationSession {
  /// The Horizon toolchain's `default` calibration: compute the thresholds by every method in
  /// `methods` (max, percentile, KL), evaluate each with `evaluate` — which quantises the model
  /// with those thresholds and returns the cosine similarity of its final output to the float
  /// output on the calibration images — and keep the most similar. Ties keep the earlier
  /// method; a NaN cosine or a throwing evaluation drops that candidate with a warning.
  public func selectDefault(
    methods: [CalibrationMethod] = [.max, .percentile, .kl], percentile: Double = 99.995,
    evaluate: (CalibrationMethod, [String: Float]) throws -> Double
  ) throws -> CalibrationSelection {
    guard !methods.isEmpty else {
      throw QuantizationError.invalidParameter("default calibration needs candidate methods")
    }
    var warnings: [CalibrationWarning] = []
    var best: (method: CalibrationMethod, thresholds: [String: Float], cosine: Double)?
    var similarities: [(method: CalibrationMethod, cosine: Double)] = []
    for method in methods {
      let (thresholds, methodWarnings) = try self.thresholds(method, percentile: percentile)
      for warning in methodWarnings where !warnings.contains(warning) {
        warnings.append(warning)
      }
      let cosine: Double
      do {
        cosine = try evaluate(method, thresholds)
      } catch {
        warnings.append(
          CalibrationWarning(
            tensor: nil, message: "candidate '\(method.rawValue)' failed to evaluate: \(error)"))
        similarities.append((method, .nan))
        continue
      }
      similarities.append((method, cosine))
      guard !cosine.isNaN else {
        warnings.append(
          CalibrationWarning(
            tensor: nil, message: "candidate '\(method.rawValue)' gave a NaN cosine; dropped"))
        continue
      }
      if let current = best, cosine <= current.cosine { continue }
      best = (method, thresholds, cosine)
    }
    guard let best else {
      throw QuantizationError.noCalibrationData(
        "no calibration candidate could be evaluated (\(methods.map(\.rawValue)))")
    }
    return CalibrationSelection(
      method: best.method, thresholds: best.thresholds, similarities: similarities,
      warnings: warnings)
  }
}
