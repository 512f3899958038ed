import Foundation
import Model

extension CalibrationOptions {
  /// The `--calib` advice every command without calibration images gives (what to pass).
  static let missingCalibrationMessage =
    "the int8 engine quantizes the float model on calibration images, and none were given: pass "
    + "--calib DATA (a tar, directory or shard pattern of JPEGs, e.g. "
    + "../shared/datasets/ilsvrc2012-val-subset-1300.tar) and --calib-count N (e.g. 32), with "
    + "the model's preprocessing (--preset and its overrides, as for `run`)"

  /// Calibrates `graph` once on `--calib` for a command that builds int8 engines itself
  /// (`bench` at every batch size, `infer` at the input's), preprocessing the images with
  /// `preprocessing`.
  ///
  /// A quantized (QDQ) model will carry its own parameters: when the int8 engine can import
  /// them, this is where such a model skips calibration (another change adds that import).
  func calibrateOnce(
    graph: Graph, preprocessing: CalibrationPreprocessOptions, threads: Int?, modelPath: String
  ) throws -> EngineFactory.CalibrationInput {
    guard !calib.isEmpty else { throw EvalError(.input, Self.missingCalibrationMessage) }
    // Batches of up to 16 keep the float pass efficient without holding many images.
    let batchSize = min(calibCount, 16)
    let source = try makeCalibration(
      dataset: try preprocessing.dataset(reading: calib), batchSize: batchSize)
    guard var input = source.input else {
      throw EvalError(.input, "--calib: no calibration source was opened")
    }
    do {
      input.calibrated = try Int8Engine.calibrate(
        graph: graph, batchSize: batchSize, imageCount: calibCount, settings: input.settings,
        threads: threads, nextBatch: input.nextBatch)
    } catch let error as EvalError {
      throw error
    } catch let error as ModelError {
      throw EvalError(.input, "\(modelPath): int8 calibration on --calib failed: \(error.message)")
    } catch {
      throw EvalError(.input, "\(modelPath): int8 calibration on --calib failed: \(error)")
    }
    for warning in input.calibrated?.warnings ?? [] { printError("calibration: \(warning)") }
    return input
  }
}
