import Foundation
import TestSupport
import Testing

@testable import Model

@Suite("Quantization calibration")
struct QuantCalibrationTests {
  private func observe(_ observer: inout TensorObserver, _ values: [Float]) throws {
    try values.withUnsafeBufferPointer { try observer.observe($0) }
  }

  @Test("max is the largest magnitude over all batches")
  func maxMethod() throws {
    var o = TensorObserver(name: "conv1")
    try observe(&o, [0.5, -1.25, 0.75])
    try observe(&o, [3.5, -0.25])
    try observe(&o, [-7.75, 1])
    var warnings: [CalibrationWarning] = []
    #expect(try o.threshold(.max, warnings: &warnings) == 7.75)
    #expect(o.minimum == -7.75 && o.maximum == 3.5 && o.batchCount == 3 && o.elementCount == 7)
    #expect(warnings.isEmpty)
  }

  @Test("histogram growth merges whole bins and keeps every count")
  func histogramGrowth() throws {
    var o = TensorObserver(name: "t", binCount: 8)
    try observe(&o, [0, 0.1, 0.5, 0.99, 1.0])  // range 1.0, width 0.125
    #expect(o.histogramRange == 1.0)
    #expect(o.histogram == [2, 0, 0, 0, 1, 0, 0, 2])
    try observe(&o, [2.5])  // factor 3 -> range 3.0, width 0.375
    #expect(o.histogramRange == 3.0)
    // Old bins 0-2 -> 0, 3-5 -> 1, 6-7 -> 2; 2.5 lands in bin 6.
    #expect(o.histogram == [2, 1, 2, 0, 0, 0, 1, 0])
    #expect(o.histogram.reduce(0, +) == 6)
    // A jump beyond binCount× moves all earlier mass to bin 0 (and must not overflow).
    var jump = TensorObserver(name: "jump", binCount: 8)
    try observe(&jump, [1e-40, -1e-41])
    try observe(&jump, [3e38])
    #expect(jump.histogram == [2, 0, 0, 0, 0, 0, 0, 1])
    #expect(jump.histogramRange == Double(Float(3e38)))
    // Zeros before any range are kept in bin 0.
    var z = TensorObserver(name: "z", binCount: 4)
    try observe(&z, [0, 0, 0])
    try observe(&z, [4])
    #expect(z.histogram == [3, 0, 0, 1])
  }

  @Test(
    "percentile agrees with numpy's inverted-CDF percentile to within one bin",
    .requiresPython,
    arguments: [99.995, 99.9, 50.0])
  func percentileMatchesNumpy(percentile: Double) throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("quant-pct")
    defer { try? FileManager.default.removeItem(at: directory) }
    let file = directory.appendingPathComponent("x.f32")
    // numpy draws the data (a heavy-tailed Laplace), writes it and prints its percentile.
    let output = try PythonReference.run(
      code: """
        import sys, numpy as np
        x = np.random.default_rng(7).laplace(0, 1, 200000).astype(np.float32)
        x.tofile(sys.argv[1])
        print(repr(float(np.percentile(np.abs(x), float(sys.argv[2]), method="inverted_cdf"))))
        """, arguments: [file.path, String(percentile)])
    let exact = try #require(Double(output.trimmingCharacters(in: .whitespacesAndNewlines)))
    let data = try Data(contentsOf: file)
    let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    #expect(values.count == 200_000)
    var o = TensorObserver(name: "x")
    // Batches of growing spread exercise the re-binning path too.
    for start in stride(from: 0, to: values.count, by: 25_000) {
      try observe(&o, Array(values[start..<(start + 25_000)]))
    }
    var warnings: [CalibrationWarning] = []
    let t = Double(try o.threshold(.percentile, percentile: percentile, warnings: &warnings))
    #expect(t >= exact && t - exact <= o.binWidth * 1.000001, "threshold \(t), exact \(exact)")
  }

  /// Histograms (2048 bins of |x|, as the observer builds them) for the KL comparisons.
  private static func klCases() throws -> [(name: String, observer: TensorObserver)] {
    var rng = QuantRandom(seed: 5)
    var cases: [(String, [Float])] = []
    // ReLU6-like: a third exact zeros, a wide body and a spike exactly at 6 (the top bin).
    cases.append(
      (
        "relu6", (0..<200_000).map { _ in Float(min(6, max(0, 1 + 2 * rng.gaussian()))) }
      ))
    // ReLU with a few far outliers, which KL must clip.
    var relu = (0..<100_000).map { _ in Float(max(0, rng.gaussian())) }
    for i in 0..<10 { relu[i] = Float(8 + Double(i) * 3) }
    cases.append(("relu-outliers", relu))
    cases.append(("gaussian", (0..<200_000).map { _ in Float(rng.gaussian()) }))
    cases.append(
      (
        "laplace",
        (0..<200_000).map { _ -> Float in
          let u = Double.random(in: -0.5..<0.5, using: &rng)
          return Float(-(u < 0 ? -1.0 : 1.0) * log(1 - 2 * abs(u)))
        }
      ))
    // Sparse: most bins empty, so Q's zero bins and empty last bins matter.
    cases.append(("sparse", (0..<3_000).map { _ in Float(Int.random(in: 0...40, using: &rng)) }))
    return try cases.map { name, values in
      var o = TensorObserver(name: name)
      // Two batches, the second wider, so the histogram has been re-binned once.
      let half = values.count / 2
      try Array(values[..<half]).withUnsafeBufferPointer { try o.observe($0) }
      try Array(values[half...]).withUnsafeBufferPointer { try o.observe($0) }
      return (name, o)
    }
  }

  @Test(
    "KL threshold equals an independent numpy implementation of TensorRT's entropy calibration",
    .requiresPython)
  func klMatchesNumpy() throws {
    let cases = try Self.klCases()
    var histograms = cases.map { $0.observer.histogram.map(Int.init) }
    histograms.append([Int](repeating: 0, count: 2048))  // all-zero
    let reference = try #require(
      try quantReference("quant_kl.py", case: histograms) as? [[String: Any]])
    try #require(reference.count == histograms.count)
    for (k, (name, observer)) in cases.enumerated() {
      let t = try CalibrationAlgorithms.klThreshold(
        observer.histogram, binWidth: observer.binWidth)
      try expectSameKLIndex(
        Int((t / observer.binWidth).rounded()), reference[k], name,
        width: observer.binWidth)
      var warnings: [CalibrationWarning] = []
      #expect(try observer.threshold(.kl, warnings: &warnings) == Float(t))
      let relative = t / observer.histogramRange
      switch name {
      case "relu6":
        // The spike at the top and the zeros in bin 0 must not pull the threshold down.
        #expect(relative > 0.95, "relu6: threshold \(t)")
      case "relu-outliers":
        #expect(t > 2 && t < 6, "the outliers must be clipped: threshold \(t)")
      case "gaussian":
        #expect(t > 2.5, "gaussian: threshold \(t) of \(observer.histogramRange)")
      case "laplace":
        // The heavy tail is clipped.
        #expect(t > 2.5 && relative < 0.9, "laplace: threshold \(t) of \(observer.histogramRange)")
      default:
        break
      }
    }
    // No count: the reference has no candidate and ours throws.
    #expect(reference.last?["index"] is NSNull)
    #expect(throws: QuantizationError.self) {
      try CalibrationAlgorithms.klThreshold([Int64](repeating: 0, count: 2048), binWidth: 1)
    }
  }

  @Test("KL keeps the full range when the only mass is in bin 0")
  func klOnlyZeroBin() throws {
    var histogram = [Int64](repeating: 0, count: 256)
    histogram[0] = 1000
    #expect(try CalibrationAlgorithms.klThreshold(histogram, binWidth: 0.5) == 128)
  }

  @Test("MSE threshold is near the analytic optimum for Gaussian and Laplace data")
  func mseKnownDistributions() throws {
    var rng = QuantRandom(seed: 11)
    let gaussian = (0..<400_000).map { _ in Float(rng.gaussian()) }
    let laplace = (0..<400_000).map { _ -> Float in
      let u = Double.random(in: -0.5..<0.5, using: &rng)
      return Float(-(u < 0 ? -1.0 : 1.0) * log(1 - 2 * abs(u)))
    }
    for (name, values, density) in [
      ("gaussian", gaussian, { (x: Double) in 2 * exp(-x * x / 2) / (2 * Double.pi).squareRoot() }),
      ("laplace", laplace, { (x: Double) in exp(-x) }),
    ] {
      var o = TensorObserver(name: name)
      try observe(&o, values)
      var warnings: [CalibrationWarning] = []
      let t = Double(try o.threshold(.mse, warnings: &warnings))
      let optimum = Self.analyticOptimum(density: density)
      #expect(abs(t - optimum) / optimum < 0.08, "\(name): threshold \(t), optimum \(optimum)")
    }
  }

  /// Minimises E(T) = ∫_T^∞ (x-T)² f(x) dx + (T/127)²/12 · ∫_0^T f(x) dx for the density f of
  /// |x| by brute force on a fine grid (independent of the histogram code).
  private static func analyticOptimum(density: (Double) -> Double) -> Double {
    let dx = 0.001
    let grid = stride(from: dx / 2, to: 30, by: dx).map { ($0, density($0) * dx) }
    var best = (t: 0.0, e: Double.infinity)
    for t in stride(from: 1.0, to: 20.0, by: 0.01) {
      var e = 0.0
      for (x, w) in grid {
        e += x > t ? (x - t) * (x - t) * w : (t / 127) * (t / 127) / 12 * w
      }
      if e < best.e { best = (t, e) }
    }
    return best.t
  }

  @Test("degenerate inputs: NaN and infinity name the tensor; constant and zero tensors warn")
  func degenerateInputs() throws {
    var o = TensorObserver(name: "stage0.conv")
    do {
      try observe(&o, [1, 2, .nan])
      Issue.record("NaN was accepted")
    } catch let error as QuantizationError {
      #expect(
        error == .nonFinite(tensor: "stage0.conv", batch: 0, index: 2, value: .nan)
          || error.description.contains("stage0.conv"))
      #expect(error.description.contains("stage0.conv") && error.description.contains("element 2"))
    }
    #expect(o.elementCount == 0)  // the bad batch left no trace
    #expect(throws: QuantizationError.self) { try observe(&o, [.infinity]) }

    var constant = TensorObserver(name: "bias_like")
    try observe(&constant, [-2.5, -2.5])
    try observe(&constant, [-2.5])
    for method in CalibrationMethod.allCases {
      var warnings: [CalibrationWarning] = []
      #expect(try constant.threshold(method, warnings: &warnings) == 2.5)
      #expect(warnings.count == 1 && warnings[0].description.contains("constant"))
    }
    var zeros = TensorObserver(name: "dead")
    try observe(&zeros, [0, 0, 0])
    var warnings: [CalibrationWarning] = []
    #expect(try zeros.threshold(.kl, warnings: &warnings) == 0)
    #expect(warnings.first?.description.contains("all calibration values are 0") == true)
    #expect(try QuantParams.symmetric(threshold: 0).scale == 1)

    let empty = TensorObserver(name: "never_fed")
    #expect(throws: QuantizationError.self) { try empty.threshold(.max, warnings: &warnings) }
  }

  @Test("a session records fewer images than requested and refuses none")
  func sessionImageCount() throws {
    var session = try CalibrationSession(tensorNames: ["a", "b"], requestedImageCount: 100)
    #expect(throws: QuantizationError.self) { try session.thresholds(.max) }
    try [Float(1), -2].withUnsafeBufferPointer { try session.observe("a", $0) }
    try [Float(0.5), 3].withUnsafeBufferPointer { try session.observe("b", $0) }
    session.endBatch(images: 40)
    let (thresholds, warnings) = try session.thresholds(.max)
    #expect(thresholds == ["a": 2, "b": 3])
    #expect(warnings.count == 1)
    #expect(
      warnings[0].description.contains("asked for 100")
        && warnings[0].description.contains("only 40"))
    #expect(throws: QuantizationError.self) {
      try [Float(1)].withUnsafeBufferPointer { try session.observe("c", $0) }
    }
    #expect(throws: QuantizationError.self) {
      try CalibrationSession(tensorNames: ["a", "a"], requestedImageCount: 1)
    }
  }

  @Test("default calibration keeps the candidate with the highest cosine")
  func defaultSelection() throws {
    var session = try CalibrationSession(tensorNames: ["x"], requestedImageCount: 1)
    var rng = QuantRandom(seed: 3)
    var values = (0..<50_000).map { _ in Float(rng.gaussian()) }
    values[0] = 40  // an outlier so max, percentile and KL differ
    try values.withUnsafeBufferPointer { try session.observe("x", $0) }
    session.endBatch(images: 1)
    let thresholds = try Dictionary(
      uniqueKeysWithValues: [CalibrationMethod.max, .percentile, .kl].map {
        ($0, try session.thresholds($0).thresholds["x"] ?? -1)
      })
    #expect(thresholds[.max] == 40)
    #expect(Set(thresholds.values).count == 3)

    // A fake evaluator whose cosine peaks at threshold 4: the closest candidate must win.
    var seen: [CalibrationMethod] = []
    let selection = try session.selectDefault { method, candidate in
      seen.append(method)
      return 1 - abs(Double(candidate["x"] ?? 0) - 4) / 100
    }
    #expect(seen == [.max, .percentile, .kl])
    let closest = thresholds.min { abs($0.value - 4) < abs($1.value - 4) }?.key
    #expect(selection.method == closest)
    #expect(selection.thresholds["x"] == thresholds[closest ?? .max])
    #expect(selection.similarities.map(\.method) == [.max, .percentile, .kl])

    // Ties keep the earlier method; NaN and throwing candidates are dropped with warnings.
    let tie = try session.selectDefault { _, _ in 0.5 }
    #expect(tie.method == .max)
    struct Boom: Error {}
    let partial = try session.selectDefault { method, _ in
      switch method {
      case .max: return .nan
      case .percentile: throw Boom()
      default: return 0.1
      }
    }
    #expect(partial.method == .kl && partial.warnings.count == 2)
    #expect(throws: QuantizationError.self) { try session.selectDefault { _, _ in .nan } }
  }
}

/// Checks that the KL index `mine` is the reference's, or ties with it in floating point
/// (the two implementations sum in different orders).
func expectSameKLIndex(
  _ mine: Int, _ reference: [String: Any], _ name: String, width: Double,
  sourceLocation: SourceLocation = #_sourceLocation
) throws {
  let expected = try #require(reference["index"] as? Int, sourceLocation: sourceLocation)
  guard mine != expected else { return }
  let divergences = try #require(
    reference["divergences"] as? [String: Any], sourceLocation: sourceLocation)
  let theirs = try #require(
    divergences[String(expected)] as? Double, sourceLocation: sourceLocation)
  let atMine = divergences[String(mine)] as? Double
  #expect(
    atMine.map { abs($0 - theirs) <= 1e-9 * max(abs(theirs), 1e-12) } == true,
    "\(name): KL index \(mine) (divergence \(atMine.map { "\($0)" } ?? "inf")) vs reference \(expected) (\(theirs)), bin width \(width)",
    sourceLocation: sourceLocation)
}
