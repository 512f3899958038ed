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
      The calibration images are --calib when given, else the first --calib-count images of \
      --data; either way they are decoded and preprocessed with the --preset and overrides, \
      as `run` would feed them to the model. The model is the int8 engine's: BatchNorm folded \
      into the convolutions, int8 weights per output channel, int32 biases, \
      QuantizeLinear/DequantizeLinear on every activation with the calibrated scales; nodes the \
      engine runs in float stay float. onnxruntime and other QDQ consumers run it.

      OUTPUT is written atomically (a temporary file in the same directory, then renamed), and \
      beside it OUTPUT.json records the source model's SHA-256, the calibration settings, the \
      chosen method, the image count, the float-fallback nodes and the tool version.

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
    guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch)") }
    if let threads, threads < 1 {
      throw ValidationError("--threads must be at least 1, got \(threads)")
    }
  }

  func run() throws {
    // Everything that can fail cheaply fails before calibration starts.
    let destination = try QuantizedModelFile(path: output, option: "--output")
    let config = try inputError { try dataset.preprocessConfig() }
    let graph = try EngineFactory.loadModel(at: model)
    try QuantizedModelFile.checkInput(of: graph, against: config, modelPath: model)
    let calibration = try calibrationOptions.makeCalibration(dataset: dataset, batchSize: batch)
    let built = try EngineFactory.makeEngine(
      named: "int8", graph: graph, batchSize: batch, threads: threads, strict: dataset.strict,
      modelPath: model, calibration: calibration.input)
    guard let engine = built as? Int8Engine else {
      throw EvalError(.internal, "the int8 engine factory returned \(type(of: built))")
    }
    QuantizedModelFile.report(engine)
    let written = try destination.write(
      engine, sourceModel: model, calibration: calibrationOptions, preprocessing: config,
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

  /// Prints what a person needs to judge the quantisation: calibration warnings, the method
  /// chosen and the nodes left in float.
  static func report(_ engine: Int8Engine) {
    for warning in engine.calibration.warnings { printError("calibration: \(warning)") }
    let c = engine.calibration
    var method = "calibration: method \(c.method.rawValue) on \(c.imageCount) images"
    if !c.candidateCosines.isEmpty {
      method +=
        " (output cosine to float: "
        + c.candidateCosines.sorted { $0.key < $1.key }.map {
          "\($0.key) \(String(format: "%.6f", $0.value))"
        }.joined(separator: ", ") + ")"
    }
    printError(method)
    if !engine.floatFallbackNodes.isEmpty {
      printError(
        "int8: \(engine.floatFallbackNodes.count) nodes run in float between dequantise and "
          + "quantise: \(engine.floatFallbackNodes.joined(separator: ", "))")
    }
  }

  /// Checks that the preprocessing produces the model's declared input (per image), so
  /// calibration never feeds it tensors of another size.
  static func checkInput(of graph: Graph, against config: PreprocessConfig, modelPath: String)
    throws
  {
    guard graph.inputs.count == 1, let declared = graph.declaredInputShapes.first,
      declared.count == 4
    else { return }
    let side = config.cropSize
    let expected = config.layout == .nchw ? [3, side, side] : [side, side, 3]
    let perImage = declared.dropFirst().map { d -> Int? in
      if case .fixed(let v) = d { return v }
      return nil
    }
    guard perImage != expected.map(Optional.some) else { return }
    throw EvalError(
      .input,
      "\(modelPath): the model input is \(perImage.map { $0.map(String.init) ?? "?" }) per image but the preprocessing (--preset/overrides) produces \(expected) (\(config.layout.rawValue), crop \(side))"
    )
  }

  /// Exports `engine`, writes the model and its sidecar (each to a temporary file in the same
  /// directory, then renamed into place) and returns the model's size and SHA-256. On failure
  /// no partial file is left behind.
  @discardableResult
  func write(
    _ engine: Int8Engine, sourceModel: String, calibration: CalibrationOptions,
    preprocessing: PreprocessConfig, batchSize: Int
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
    var preprocessingFields: [String: String] = [:]
    if let encoded = try? JSONEncoder.canonical.encode(preprocessing),
      let object = try? JSONSerialization.jsonObject(with: encoded) as? [String: Any]
    {
      for (key, value) in object {
        preprocessingFields[key] =
          (value as? [Any]).map { $0.map { "\($0)" }.joined(separator: ",") } ?? "\(value)"
      }
    }
    let provenance = Provenance(
      tool: "imagenet-eval", toolVersion: ToolInfo.version,
      created: ISO8601DateFormatter().string(from: Date()), sourceModel: sourceModel,
      sourceModelSHA256: sourceDigest,
      quantizedModelSHA256: digest, format: "QDQ", opset: Int8Engine.qdqOpset,
      calibration: calibration.describe(engine), preprocessing: preprocessingFields,
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
