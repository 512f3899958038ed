import ArgumentParser
import Dataset
import Foundation
import Model

/// `imagenet-eval infer --model m.onnx --input x.npy --output y.npy`: one batch through one
/// engine, logits out — how a user checks an engine against onnxruntime on their own tensors.
struct InferCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "infer",
    abstract: "Run one float32 .npy batch through an engine and write the logits as .npy.",
    discussion: """
      The batch size is the input's first dimension; the rest must match the model input \
      (e.g. [N, 3, 224, 224]). The output is float32 [N, classes], image-major, to compare \
      with onnxruntime's output for the same tensor. --engine int8 quantizes a float \
      model first on --calib images (--calib-count, and the model's preprocessing: --preset …); \
      a model that is already quantized (QDQ or QOperator) runs on int8 with its own scales and \
      codes, the default engine then: calibration options are refused, and float is refused \
      (the file holds no float model; reference evaluates its ONNX definition in float).
      """)

  @Option(help: ArgumentHelp("The ONNX classifier.", valueName: "file"))
  var model: String

  @Option(help: ArgumentHelp("Input tensor, float32 .npy, batch first.", valueName: "file"))
  var input: String

  @Option(help: ArgumentHelp("Where to write the logits (.npy).", valueName: "file"))
  var output: String

  @Option(
    help: ArgumentHelp(
      "Engine: \(EngineFactory.knownNames.joined(separator: ", ")) (default: float; int8 for "
        + "a quantized model).", valueName: "name"))
  var engine: String?

  @Option(help: ArgumentHelp("oneDNN threads (default: one per core).", valueName: "n"))
  var threads: Int?

  @Flag(help: "Refuse models that would run any slow reference kernel.")
  var strict = false

  @OptionGroup(title: "int8 calibration")
  var calibrationOptions: CalibrationOptions

  @OptionGroup(title: "Preprocessing of the calibration images")
  var preprocessing: PreprocessOptions

  func validate() throws {
    try OptionChecks.require(threads, atLeast: 1, "--threads")
  }

  func run() throws {
    let array: NumpyArray
    do {
      array = try NumpyFile.read(URL(fileURLWithPath: input))
    } catch {
      throw EvalError(.input, "--input: \(error)")
    }
    guard array.dtype == .float32 else {
      throw EvalError(
        .input, "--input: \(input) holds \(array.dtype.rawValue); the engines take float32")
    }
    guard array.shape.count >= 2, let batchSize = array.shape.first, batchSize > 0 else {
      throw EvalError(
        .input, "--input: \(input) has shape \(array.shape); expected a batch [N, …] with N ≥ 1")
    }
    let graph = try EngineFactory.loadModel(at: model)
    let engineName = engine ?? EngineFactory.defaultEngine(for: graph)
    let names = try EngineFactory.parseNames(engineName)
    guard names.count == 1 else {
      throw EvalError(.input, "--engine takes one engine, got '\(engineName)'")
    }
    let int8 = try calibrationOptions.prepareInt8(
      engines: names, graph: graph, preprocessing: preprocessing, threads: threads,
      modelPath: model)
    let built = try EngineFactory.makeEngine(
      named: names[0], graph: graph, batchSize: batchSize, threads: threads, strict: strict,
      modelPath: model, calibration: int8.calibration)
    if let engine = built as? Int8Engine {
      Int8Provenance.report(engine, imported: int8.imported, calibration: calibrationOptions)
    }
    guard built.inputShape == array.shape else {
      throw EvalError(
        .input,
        "--input: \(input) has shape \(array.shape) but the model input is \(built.inputShape)")
    }
    let values = try array.values(as: Float.self)
    var logits = [Float](repeating: 0, count: batchSize * built.classCount)
    try values.withUnsafeBufferPointer { inputBuffer in
      try logits.withUnsafeMutableBufferPointer { outputBuffer in
        try built.run(input: inputBuffer, output: outputBuffer)
      }
    }
    do {
      try NumpyFile.write(
        NumpyArray(shape: [batchSize, built.classCount], values: logits),
        to: URL(fileURLWithPath: output))
    } catch {
      throw EvalError(.input, "--output: cannot write \(output): \(error)")
    }
    printError(
      "\(built.name): \(batchSize) image\(batchSize == 1 ? "" : "s") -> \(output) [\(batchSize), \(built.classCount)]"
    )
  }
}
