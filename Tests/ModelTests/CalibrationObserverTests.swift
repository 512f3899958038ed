import Foundation
import TestSupport
import Testing

@testable import Model

/// The vectorised range pass of `TensorObserver` and histogram-less (range-only) calibration.
@Suite("Calibration observer: vector range pass, range-only statistics")
struct CalibrationObserverTests {
  private func observe(_ observer: inout TensorObserver, _ values: [Float]) throws {
    try values.withUnsafeBufferPointer { try observer.observe($0) }
  }

  @Test("the vector range equals Array.min/max for every length and position of the extremes")
  func rangeMatchesScalar() throws {
    var random = QuantRandom(seed: 17)
    // Lengths around the vector width (16) and its multiples, so extremes land in the
    // vector body and in the scalar tail.
    for count in [1, 2, 15, 16, 17, 31, 32, 33, 47, 100, 1000, 4099] {
      for trial in 0..<4 {
        var values = (0..<count).map { _ in Float.random(in: -3...3, using: &random) }
        // Put a distinct extreme at a chosen position: first, last, or random.
        let position = [0, count - 1, Int.random(in: 0..<count, using: &random), count / 2][trial]
        values[position] = trial.isMultiple(of: 2) ? -50 : 50
        let range = values.withUnsafeBufferPointer { TensorObserver.range(of: $0) }
        #expect(range.finite, "count \(count) trial \(trial)")
        #expect(range.minimum == values.min() && range.maximum == values.max(), "count \(count)")
      }
    }
    let empty = [Float]().withUnsafeBufferPointer { TensorObserver.range(of: $0) }
    #expect(empty.finite && empty.minimum == .infinity && empty.maximum == -.infinity)
  }

  @Test("NaN or infinity anywhere names the tensor, the batch and the first bad element")
  func nonFiniteIsLocated() throws {
    for count in [3, 16, 17, 40, 1000] {
      for bad in [Float.nan, .infinity, -.infinity, .signalingNaN] {
        for index in Set([0, count / 2, count - 1]) {
          var o = TensorObserver(name: "stage1.add")
          try observe(&o, [1, -2, 3])  // batch 0 is good
          var values = (0..<count).map { Float($0) * 0.25 - 1 }
          values[index] = bad
          if index + 1 < count { values[count - 1] = .nan }  // a later bad value is not reported
          do {
            try observe(&o, values)
            Issue.record("\(bad) at \(index) of \(count) was accepted")
          } catch let error as QuantizationError {
            guard case .nonFinite(let tensor, let batch, let at, let value) = error else {
              Issue.record("unexpected error \(error)")
              continue
            }
            #expect(tensor == "stage1.add" && batch == 1 && at == index, "\(error)")
            #expect(value.isNaN == bad.isNaN && (bad.isNaN || value == bad))
            #expect(error.description.contains("element \(index) of calibration batch 1"))
          }
          // The bad batch left no trace.
          #expect(o.batchCount == 1 && o.elementCount == 3)
          #expect(o.minimum == -2 && o.maximum == 3)
        }
      }
    }
  }

  @Test("range-only observation gives the same max threshold and refuses histogram methods")
  func rangeOnly() throws {
    var random = QuantRandom(seed: 5)
    var full = TensorObserver(name: "conv")
    var rangeOnly = TensorObserver(name: "conv", collectsHistogram: false)
    for _ in 0..<5 {
      let values = (0..<777).map { _ in Float.random(in: -4...6, using: &random) }
      try observe(&full, values)
      try observe(&rangeOnly, values)
    }
    #expect(full.minimum == rangeOnly.minimum && full.maximum == rangeOnly.maximum)
    #expect(full.elementCount == rangeOnly.elementCount && rangeOnly.batchCount == 5)
    #expect(rangeOnly.histogram.allSatisfy { $0 == 0 } && rangeOnly.histogramRange == 0)
    var warnings: [CalibrationWarning] = []
    #expect(
      try rangeOnly.threshold(.max, warnings: &warnings)
        == full.threshold(.max, warnings: &warnings))
    for method in CalibrationMethod.allCases where method.needsHistogram {
      do {
        _ = try rangeOnly.threshold(method, warnings: &warnings)
        Issue.record("\(method) was served without a histogram")
      } catch let error as QuantizationError {
        #expect(
          error.description.contains("'conv'") && error.description.contains("'\(method)'")
            && error.description.contains("without histograms"), "\(error)")
      }
      _ = try full.threshold(method, warnings: &warnings)  // the full observer serves it
    }
    #expect(!CalibrationMethod.max.needsHistogram)
  }

  @Test("a range-only session: max thresholds unchanged, histogram methods refused")
  func rangeOnlySession() throws {
    var full = try CalibrationSession(tensorNames: ["a", "b"], requestedImageCount: 2)
    var rangeOnly = try CalibrationSession(
      tensorNames: ["a", "b"], requestedImageCount: 2, collectsHistograms: false)
    #expect(full.collectsHistograms && !rangeOnly.collectsHistograms)
    for session in [0, 1] {
      for (name, values) in [("a", [Float(1), -2.5, 0.5]), ("b", [Float(0.25), 3])] {
        try values.withUnsafeBufferPointer {
          if session == 0 { try full.observe(name, $0) } else { try rangeOnly.observe(name, $0) }
        }
      }
    }
    full.endBatch(images: 2)
    rangeOnly.endBatch(images: 2)
    #expect(try rangeOnly.thresholds(.max).thresholds == ["a": 2.5, "b": 3])
    #expect(try rangeOnly.thresholds(.max).thresholds == full.thresholds(.max).thresholds)
    #expect(throws: QuantizationError.self) { try rangeOnly.thresholds(.kl) }
    #expect(throws: QuantizationError.self) {
      try rangeOnly.selectDefault { _, _ in 1 }
    }
  }

  @Test(
    "Int8Engine.calibrate with max skips histograms; the same thresholds as a full observation",
    .requiresPython)
  func int8RangeOnlyCalibration() throws {
    let graph = try int8TestModel("resnetish")
    let full = try Int8Engine.observe(
      graph: graph, batchSize: 2, imageCount: 3,
      nextBatch: seededBatches(2, images: 2, seed: 11))
    let rangeOnly = try Int8Engine.observe(
      graph: graph, batchSize: 2, imageCount: 3, collectsHistograms: false,
      nextBatch: seededBatches(2, images: 2, seed: 11))
    #expect(full.collectsHistograms && !rangeOnly.collectsHistograms)
    #expect(rangeOnly.observers.allSatisfy { $0.histogramRange == 0 })
    let settings = Int8Settings(method: .max)
    let a = try full.calibration(settings: settings)
    let b = try rangeOnly.calibration(settings: settings)
    let c = try Int8Engine.calibrate(
      graph: graph, batchSize: 2, imageCount: 3, settings: settings,
      nextBatch: seededBatches(2, images: 2, seed: 11))
    #expect(!a.thresholds.isEmpty)
    #expect(a.thresholds == b.thresholds && a.thresholds == c.thresholds)
    #expect(a.minimums == b.minimums && a.maximums == b.maximums)
    for method in [Int8Settings.Method.default, .percentile, .kl, .mse] {
      do {
        _ = try rangeOnly.calibration(settings: Int8Settings(method: method))
        Issue.record("\(method) calibrated from ranges only")
      } catch let error as QuantizationError {
        #expect(error.description.contains("'\(method.rawValue)'"), "\(error)")
        #expect(error.description.contains("ranges only"), "\(error)")
      }
    }
  }
}
