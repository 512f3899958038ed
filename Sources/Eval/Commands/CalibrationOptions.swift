import ArgumentParser
import Dataset
import Foundation
import Model

/// The int8 engine's calibration options, shared by every command that quantizes a float
/// model: where the calibration images come from, how many, the method, and per-node
/// overrides.
struct CalibrationOptions: ParsableArguments {
  @Option(
    parsing: .upToNextOption,
    help: ArgumentHelp(
      "int8 calibration images, in the forms --data takes (default: the first --calib-count "
        + "images of --data, before sharding, so every shard calibrates identically).",
      valueName: "path|pattern"))
  var calib: [String] = []

  @Option(help: ArgumentHelp("int8 calibration images to use.", valueName: "n"))
  var calibCount: Int = 100

  @Option(
    help: ArgumentHelp(
      "int8 calibration: default (max, percentile and kl are tried; the one whose output is "
        + "closest (cosine) to float on the calibration images is kept), max, percentile, kl, mse.",
      valueName: "method"))
  var calibMethod: String = "default"

  @Option(help: ArgumentHelp("Percentile of |x| for --calib-method percentile.", valueName: "p"))
  var calibPercentile: Double = 99.995

  @Option(
    help: ArgumentHelp(
      "Nodes the int8 engine leaves in float (comma-separated ONNX node names).",
      valueName: "names"))
  var floatNodes: String?

  func validate() throws {
    guard calibCount >= 1 else {
      throw ValidationError("--calib-count must be at least 1, got \(calibCount)")
    }
    guard Int8Settings.Method(rawValue: calibMethod) != nil else {
      throw ValidationError(
        "--calib-method: unknown method '\(calibMethod)' (known: "
          + Int8Settings.Method.allCases.map(\.rawValue).joined(separator: ", ") + ")")
    }
    guard calibPercentile > 0, calibPercentile <= 100 else {
      throw ValidationError("--calib-percentile must be in (0, 100], got \(calibPercentile)")
    }
  }

  /// The engine settings these options describe.
  func settings() -> Int8Settings {
    Int8Settings(
      method: Int8Settings.Method(rawValue: calibMethod) ?? .default, percentile: calibPercentile,
      floatNodes: Self.nodeNames(floatNodes))
  }

  /// The names of a comma-separated node list (blank entries dropped).
  static func nodeNames(_ list: String?) -> Set<String> {
    Set(
      (list ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty })
  }

  /// The int8 engine's calibration source: its own pipeline over `--calib` (or the first
  /// `--calib-count` images of `--data`, unsharded and unfiltered), with the first batch kept
  /// for the layer-wise report.
  final class Calibration {
    var input: EngineFactory.CalibrationInput!
    var firstBatch: [Float] = []
    var firstBatchCount = 0
  }

  func makeCalibration(dataset: DatasetOptions, batchSize: Int) throws -> Calibration {
    var options = dataset
    if !calib.isEmpty { options.data = calib }
    options.shard = .whole
    options.classes = nil
    options.limit = calibCount
    let opened = try options.makePipeline(batchSize: batchSize)
    let settings = self.settings()
    let calibration = Calibration()
    calibration.input = EngineFactory.CalibrationInput(
      settings: settings, imageCount: calibCount
    ) { [unowned calibration] buffer in
      while let batch = try opened.pipeline.next() {
        guard batch.count > 0 else { continue }
        let filled = batch.count * batch.elementCount
        _ = buffer.update(fromContentsOf: UnsafeBufferPointer(rebasing: batch.tensor[..<filled]))
        if calibration.firstBatch.isEmpty {
          calibration.firstBatch = Array(batch.tensor)
          calibration.firstBatchCount = batch.count
        }
        return batch.count
      }
      return 0
    }
    return calibration
  }

  /// The calibration as the run manifest records it (part of the run's identity).
  func describe(_ engine: Int8Engine) -> [String: String] {
    let c = engine.calibration
    var result = [
      "method": c.method.rawValue,
      "requested_method": calibMethod,
      "images": String(c.imageCount),
      "requested_images": String(c.requestedImageCount),
      "source": calib.isEmpty
        ? "evaluation data: the first \(calibCount) images of --data (before sharding)"
        : calib.joined(separator: " "),
      "percentile": String(calibPercentile),
      "float_nodes": (floatNodes ?? ""),
      "float_fallback_nodes": engine.floatFallbackNodes.joined(separator: ","),
      "quantized_nodes": String(engine.quantizedNodes.count),
    ]
    for (method, cosine) in c.candidateCosines {
      result["candidate_cosine.\(method)"] = String(format: "%.6f", cosine)
    }
    return result
  }
}
