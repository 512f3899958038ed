import ArgumentParser
import Dataset
import Foundation
import Model

/// `imagenet-eval quantize --model m.onnx --data calib.tar --output q.onnx`: calibrates the
/// float model for int8 exactly as `run --engines float,int8` does and writes the result as a
/// standard QDQ ONNX model, with a JSON sidecar recording where it came from.
struct QuantizeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "quantize",
    abstract: "Calibrate a float ONNX classifier for int8 and write it as a QDQ ONNX model.",
    discussion: """
      The calibration images are --calib when given (then --data is not needed), else the \
      first --calib-count images of --data; either way they are decoded and preprocessed with \
      the --preset and overrides, as `run` would feed them to the model (through the int8 \
      engine's own colour path with --int8-color or a --mapper-config input_type_rt). The model is the int8 engine's: BatchNorm folded \
      into the convolutions, int8 weights per output channel, int32 biases, \
      QuantizeLinear/DequantizeLinear on every activation with the calibrated scales; nodes the \
      engine runs in float stay float. onnxruntime and other QDQ consumers run it.

      OUTPUT is written atomically (a temporary file in the same directory, then renamed), and \
      beside it OUTPUT.json records the source model's SHA-256, the calibration settings, the \
      chosen method, the image count, the preprocessing the calibration images went through, \
      the float-fallback nodes and the tool version. A model that is already quantized is \
      refused.

      Exit status: 0 success; 1 usage or input error (bad model, unsupported op, unusable \
      --output directory, preprocessing not matching the model input); 2 internal error.
      """)

  @Option(help: ArgumentHelp("The float ONNX classifier.", valueName: "file"))
  var model: String

  @Option(help: ArgumentHelp("Where to write the QDQ model (and OUTPUT.json).", valueName: "file"))
  var output: String

  @OptionGroup var dataset: DatasetOptions

  @OptionGroup var calibrationOptions: CalibrationOptions

  @Option(help: ArgumentHelp("oneDNN/OpenMP threads (default: one per core).", valueName: "n"))
  var threads: Int?

  @Option(help: ArgumentHelp("Calibration images per batch.", valueName: "n"))
  var batch: Int = 16

  func validate() throws {
    if calibrationOptions.calib.isEmpty { try dataset.requireData() }
    try OptionChecks.require(batch, atLeast: 1, "--batch")
    try OptionChecks.require(threads, atLeast: 1, "--threads")
  }

  func run() throws {
    // Everything that can fail cheaply fails before calibration starts.
    let destination = try QuantizedModelFile(path: output, option: "--output")
    let config = try inputError { try dataset.preprocessConfig() }
    let graph = try EngineFactory.loadModel(at: model)
    guard !graph.isQuantized else {
      throw EvalError(
        .input,
        "\(model) is already quantized (\(try ImportedQuantization(modelAt: model).format.rawValue)); "
          + "quantize takes the float model (run, bench and infer run this one as it is)")
    }
    try ModelInput.check(graph, against: config, modelPath: model)
    let setup = try inputError { try calibrationOptions.resolve(graph: graph, base: config) }
    for warning in setup.warnings { printError("warning: \(warning)") }
    let calibration = try calibrationOptions.makeCalibration(
      dataset: dataset, batchSize: batch, setup: setup)
    let built = try EngineFactory.makeEngine(
      named: "int8", graph: graph, batchSize: batch, threads: threads, strict: dataset.strict,
      modelPath: model, calibration: calibration.input)
    guard let engine = built as? Int8Engine else {
      throw EvalError(.internal, "the int8 engine factory returned \(type(of: built))")
    }
    let described = Int8Provenance.report(
      engine, imported: nil, calibration: calibrationOptions, setup: setup)
    let written = try destination.write(
      engine, sourceModel: model, calibration: described,
      preprocessing: QuantizedModelFile.preprocessingFields(
        setup.preprocess ?? config, preset: dataset.preset, decoder: dataset.decoderOptions),
      batchSize: batch)
    print(
      "wrote \(output) (\(written.byteCount) bytes, sha256 \(written.sha256.prefix(12))…, "
        + "\(engine.quantizedNodes.count) quantized nodes, "
        + "\(engine.floatFallbackNodes.count) in float) and \(output).json")
  }
}

/// A QDQ model file and its `.json` sidecar, written atomically: shared by `quantize` and
/// `run --save-quantized`.
struct QuantizedModelFile {
  /// The model file.
  let url: URL
  /// The option that named it, for messages.
  let option: String

  /// What the sidecar records.
  struct Provenance: Codable, Equatable {
    var tool: String
    var toolVersion: String
    var created: String
    var sourceModel: String
    var sourceModelSHA256: String
    var quantizedModelSHA256: String
    var format: String
    var opset: Int
    var calibration: [String: String]
    var preprocessing: [String: String]
    var batchSize: Int
    var quantizedNodes: [String]
    var floatFallbackNodes: [String]
    var warnings: [String]

    enum CodingKeys: String, CodingKey {
      case tool, created, format, opset, calibration, preprocessing, warnings
      case toolVersion = "tool_version"
      case sourceModel = "source_model"
      case sourceModelSHA256 = "source_model_sha256"
      case quantizedModelSHA256 = "quantized_model_sha256"
      case batchSize = "batch_size"
      case quantizedNodes = "quantized_nodes"
      case floatFallbackNodes = "float_fallback_nodes"
    }
  }

  /// Checks that `path` can be written: its directory exists and is a directory. Throws an
  /// input error naming `option` otherwise, before any work is done.
  init(path: String, option: String) throws {
    self.option = option
    url = URL(fileURLWithPath: path)
    var isDirectory: ObjCBool = false
    let directory = url.deletingLastPathComponent()
    guard !path.isEmpty, !path.hasSuffix("/") else {
      throw EvalError(.input, "\(option): '\(path)' is not a file name")
    }
    guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory),
      isDirectory.boolValue
    else {
      throw EvalError(.input, "\(option): the directory \(directory.path) does not exist")
    }
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory),
      isDirectory.boolValue
    {
      throw EvalError(.input, "\(option): \(url.path) is a directory")
    }
    guard FileManager.default.isWritableFile(atPath: directory.path) else {
      throw EvalError(.input, "\(option): the directory \(directory.path) is not writable")
    }
  }

  /// The sidecar's `preprocessing`: every setting of `config` (what the int8 engine saw:
  /// its own colour path when it has one), the `--preset` it started from and the decoder.
  static func preprocessingFields(
    _ config: PreprocessConfig, preset: String, decoder: JPEGDecoder.Options
  ) -> [String: String] {
    var fields = config.flattenedSettings
    fields["preset"] = preset
    fields["decoder.fast_dct"] = String(decoder.fastDCT)
    fields["decoder.fast_decode"] = String(decoder.fastDecode)
    return fields
  }

  /// Exports `engine`, writes the model and its sidecar (each to a temporary file in the same
  /// directory, then renamed into place) and returns the model's size and SHA-256. On failure
  /// no partial file is left behind.
  @discardableResult
  func write(
    _ engine: Int8Engine, sourceModel: String, calibration: [String: String],
    preprocessing: [String: String], batchSize: Int
  ) throws -> (byteCount: Int, sha256: String) {
    let sourceDigest = try SHA256.hexDigest(ofFile: URL(fileURLWithPath: sourceModel))
    let data: Data
    do {
      data = try engine.quantizedModel(
        producerVersion: ToolInfo.version, metadata: ["source_model_sha256": sourceDigest])
    } catch let error as ModelError {
      throw EvalError(.input, "\(sourceModel): cannot export the int8 model: \(error.message)")
    }
    var hash = SHA256()
    data.withUnsafeBytes { hash.update($0) }
    let digest = hash.finalizeHex()
    let provenance = Provenance(
      tool: "imagenet-eval", toolVersion: ToolInfo.version,
      created: ISO8601DateFormatter().string(from: Date()), sourceModel: sourceModel,
      sourceModelSHA256: sourceDigest,
      quantizedModelSHA256: digest, format: "QDQ", opset: Int8Engine.qdqOpset,
      calibration: calibration, preprocessing: preprocessing,
      batchSize: batchSize, quantizedNodes: engine.quantizedNodes,
      floatFallbackNodes: engine.floatFallbackNodes,
      warnings: engine.calibration.warnings.map { "\($0)" })
    let sidecar = try JSONEncoder.canonical.encode(provenance)
    let sidecarURL = URL(fileURLWithPath: url.path + ".json")
    let directory = url.deletingLastPathComponent()
    let token = UUID().uuidString.prefix(8)
    let temporaryModel = directory.appendingPathComponent(".\(url.lastPathComponent).\(token).tmp")
    let temporarySidecar = directory.appendingPathComponent(
      ".\(sidecarURL.lastPathComponent).\(token).tmp")
    defer {
      try? FileManager.default.removeItem(at: temporaryModel)
      try? FileManager.default.removeItem(at: temporarySidecar)
    }
    do {
      try data.write(to: temporaryModel)
      try sidecar.write(to: temporarySidecar)
    } catch {
      throw EvalError(
        .input, "\(option): cannot write in \(directory.path): \(error.localizedDescription)")
    }
    // rename(2) replaces an existing file atomically: readers see the old or the new model.
    for (from, to) in [(temporaryModel, url), (temporarySidecar, sidecarURL)]
    where rename(from.path, to.path) != 0 {
      throw EvalError(
        .input,
        "\(option): cannot move the written file to \(to.path): \(String(cString: strerror(errno)))"
      )
    }
    return (data.count, digest)
  }
}
