import Foundation
import Model

extension CalibrationOptions {
  /// The `--calib` advice every command without calibration images gives (what to pass).
  static let missingCalibrationMessage =
    "the int8 engine quantizes the float model on calibration images, and none were given: pass "
    + "--calib DATA (a tar, directory or shard pattern of JPEGs, e.g. "
    + "../shared/datasets/ilsvrc2012-val-subset-1300.tar) and --calib-count N (e.g. 32), with "
    + "the model's preprocessing (--preset and its overrides, as for `run`), or give a model "
    + "that is already quantized"

  /// The options given that configure calibration, by their spelling on the command line.
  var calibrationOptionsGiven: [String] {
    [
      ("--calib", !calib.isEmpty), ("--calib-count", calibCount != nil),
      ("--calib-method", calibMethod != Self.defaultMethod),
      ("--calib-percentile", calibPercentile != Self.defaultPercentile),
      ("--float", !floatNodes.isEmpty), ("--int16", !int16Nodes.isEmpty),
      ("--mapper-config", mapperConfig != nil),
    ].filter(\.1).map(\.0)
  }

  /// Refuses options that would configure calibration (and `others`, e.g. `--save-quantized`)
  /// for a model that is already quantized: the engine would ignore them, and a report
  /// listing them would describe a quantization that never happened.
  func refuse(
    forQuantizedModel imported: ImportedQuantization, modelPath: String, others: [String] = []
  ) throws {
    let given = calibrationOptionsGiven + others
    guard !given.isEmpty else { return }
    throw EvalError(
      .input,
      "\(modelPath) is already quantized (\(imported.format.rawValue)): the int8 engine runs it "
        + "with the scales and codes it holds and calibrates nothing, so "
        + given.joined(separator: ", ") + " would change nothing; drop "
        + (given.count == 1 ? "it" : "them") + " (to quantize differently, give the float model)")
  }

  /// What `bench` and `infer` need before building int8 engines: for a float model, one
  /// calibration on `--calib` (preprocessed with `preprocessing`) that every batch size
  /// reuses; for a quantized model, its description, after refusing calibration options.
  /// Both nil when `engines` has no int8.
  func prepareInt8(
    engines: [String], graph: Graph, preprocessing: PreprocessOptions, threads: Int?,
    modelPath: String
  ) throws -> (calibration: EngineFactory.CalibrationInput?, imported: ImportedQuantization?) {
    if graph.isQuantized {
      let imported = try ImportedQuantization(modelAt: modelPath)
      try refuse(forQuantizedModel: imported, modelPath: modelPath)
      return (nil, imported)
    }
    guard engines.contains("int8") else { return (nil, nil) }
    return (
      try calibrateOnce(
        graph: graph, preprocessing: preprocessing, threads: threads, modelPath: modelPath), nil
    )
  }

  /// Calibrates `graph` once on `--calib` for a command that builds int8 engines itself
  /// (`bench` at every batch size, `infer` at the input's), preprocessing the images with
  /// `preprocessing`.
  func calibrateOnce(
    graph: Graph, preprocessing: PreprocessOptions, threads: Int?, modelPath: String
  ) throws -> EngineFactory.CalibrationInput {
    guard !calib.isEmpty else { throw EvalError(.input, Self.missingCalibrationMessage) }
    // Batches of up to 16 keep the float pass efficient without holding many images.
    let batchSize = min(imageCount, 16)
    let source = try makeCalibration(
      dataset: try DatasetOptions.reading(calib, preprocess: preprocessing), batchSize: batchSize)
    guard var input = source.input else {
      throw EvalError(.input, "--calib: no calibration source was opened")
    }
    do {
      input.calibrated = try Int8Engine.calibrate(
        graph: graph, batchSize: batchSize, imageCount: imageCount, settings: input.settings,
        threads: threads, nextBatch: input.nextBatch)
    } catch {
      throw EvalError(modelFailure: error, "\(modelPath): int8 calibration on --calib failed")
    }
    return input
  }
}
