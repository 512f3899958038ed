import ArgumentParser
import Dataset
import Foundation
import Model

/// The int8 engine's calibration options, shared by every command that quantizes a float
/// model: where the calibration images come from, how many, the method, per-node overrides,
/// a Horizon/RDK mapper configuration and the int8 engine's own input colour path.
///
/// With `--mapper-config` the file supplies every value it sets; an option left at its default
/// defers to it, and an option that contradicts it is an error naming both (see `Int8Setup`).
struct CalibrationOptions: ParsableArguments {
  /// `--calib-method`'s default; a different value is an explicit choice.
  static let defaultMethod = "default"
  /// `--calib-percentile`'s default; a different value is an explicit choice.
  static let defaultPercentile = 99.995
  /// Calibration images when `--calib-count` is not given.
  static let defaultCount = 100

  @Option(
    parsing: .upToNextOption,
    help: ArgumentHelp(
      "int8 calibration images, in the forms --data takes (default: the first --calib-count "
        + "images of --data, before sharding, so every shard calibrates identically).",
      valueName: "path|pattern"))
  var calib: [String] = []

  @Option(help: ArgumentHelp("int8 calibration images to use (default: 100).", valueName: "n"))
  var calibCount: Int?

  /// The calibration images asked for: `--calib-count` or its default.
  var imageCount: Int { calibCount ?? Self.defaultCount }

  @Option(
    help: ArgumentHelp(
      "int8 calibration: default (max, percentile and kl are tried; the one whose output is "
        + "closest (cosine) to float on the calibration images is kept), max, percentile, kl, mse.",
      valueName: "method"))
  var calibMethod: String = CalibrationOptions.defaultMethod

  @Option(help: ArgumentHelp("Percentile of |x| for --calib-method percentile.", valueName: "p"))
  var calibPercentile: Double = CalibrationOptions.defaultPercentile

  @Option(
    name: [.customLong("float"), .customLong("float-nodes")], parsing: .upToNextOption,
    help: ArgumentHelp(
      "Nodes the int8 engine leaves in float between dequantise and quantise (ONNX node "
        + "names, space- or comma-separated; --float-nodes is the old spelling).",
      valueName: "node"))
  var floatNodes: [String] = []

  @Option(
    name: .customLong("int16"), parsing: .upToNextOption,
    help: ArgumentHelp(
      "Nodes whose output activations the int8 engine keeps as symmetric int16 (ONNX node "
        + "names, space- or comma-separated).",
      valueName: "node"))
  var int16Nodes: [String] = []

  @Option(
    help: ArgumentHelp(
      "Horizon/RDK mapper YAML (hb_mapper's *_config.yaml): calibration_type, max_percentile, "
        + "node_info (int16, CPU), run_on_cpu/bpu, and input_type_rt/input_type_train, norm_type, "
        + "mean_value, scale_value as the int8 engine's input path. Keys this engine cannot "
        + "model are listed as warnings (stderr, summary.json, report.md).",
      valueName: "file"))
  var mapperConfig: String?

  @Option(
    help: ArgumentHelp(
      "Colour path of the int8 engine's input when it differs from --preset's, e.g. nv12 "
        + "(= nv12-full, as the board's camera path), nv12-video, rgb; takes the --color "
        + "spellings. The int8 engine then also runs on the --preset tensor (reported as "
        + "int8-rgb) so the drop splits into quantisation and input path.",
      valueName: "spec"))
  var int8Color: String?

  func validate() throws {
    try OptionChecks.require(calibCount, atLeast: 1, "--calib-count")
    guard Int8Settings.Method(rawValue: calibMethod) != nil else {
      throw ValidationError(
        "--calib-method: unknown method '\(calibMethod)' (known: "
          + Int8Settings.Method.allCases.map(\.rawValue).joined(separator: ", ") + ")")
    }
    guard calibPercentile > 0, calibPercentile <= 100 else {
      throw ValidationError("--calib-percentile must be in (0, 100], got \(calibPercentile)")
    }
  }

  /// The engine settings the command-line options alone describe (without
  /// `--mapper-config`; `resolve(graph:base:)` combines both).
  func settings() -> Int8Settings {
    Int8Settings(
      method: Int8Settings.Method(rawValue: calibMethod) ?? .default, percentile: calibPercentile,
      floatNodes: Self.nodeNames(floatNodes), int16Nodes: Self.nodeNames(int16Nodes))
  }

  /// The settings and int8 input path of these options combined with `--mapper-config`, for
  /// a model whose other engines read tensors made with `base`.
  func resolve(graph: Graph?, base: PreprocessConfig) throws -> Int8Setup {
    try Int8Setup.resolve(self, graph: graph, base: base)
  }

  /// The names of a comma-separated node list (blank entries dropped).
  static func nodeNames(_ list: String?) -> Set<String> {
    Set(
      (list ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty })
  }

  /// The names of repeated and/or comma-separated node options (blank entries dropped).
  static func nodeNames(_ values: [String]) -> Set<String> {
    values.reduce(into: Set<String>()) { $0.formUnion(nodeNames($1)) }
  }

  /// The int8 engine's calibration source: its own pipeline over `--calib` (or the first
  /// `--calib-count` images of `--data`, unsharded and unfiltered), with the first batch kept
  /// for the layer-wise report.
  final class Calibration {
    var input: EngineFactory.CalibrationInput!
    var firstBatch: [Float] = []
    var firstBatchCount = 0
  }

  ///
  /// `setup` (from `resolve(graph:base:)`) supplies the settings and, when the int8 engine has
  /// its own input path, the preprocessing the calibration images go through (the int8
  /// engine's own, NV12 included, so `int8` and `int8-rgb` share one set of scales).
  func makeCalibration(
    dataset: DatasetOptions, batchSize: Int, setup: Int8Setup? = nil
  ) throws -> Calibration {
    var options = dataset
    if !calib.isEmpty { options.data = calib }
    options.shard = .whole
    options.classes = nil
    options.limit = imageCount
    let opened = try options.makePipeline(
      batchSize: batchSize, configs: setup?.preprocess.map { [$0] })
    let settings = setup?.settings ?? self.settings()
    let calibration = Calibration()
    calibration.input = EngineFactory.CalibrationInput(
      settings: settings, imageCount: imageCount
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
  func describe(_ engine: Int8Engine, setup: Int8Setup? = nil) -> [String: String] {
    let c = engine.calibration
    let settings = setup?.settings ?? self.settings()
    var result = [
      "method": c.method.rawValue,
      "requested_method": setup == nil ? calibMethod : settings.method.rawValue,
      "images": String(c.imageCount),
      "requested_images": String(c.requestedImageCount),
      "source": calib.isEmpty
        ? "evaluation data: the first \(imageCount) images of --data (before sharding)"
        : calib.joined(separator: " "),
      "percentile": String(settings.percentile),
      "float_nodes": settings.floatNodes.sorted().joined(separator: ","),
      "int16_nodes": settings.int16Nodes.sorted().joined(separator: ","),
      "float_fallback_nodes": engine.floatFallbackNodes.joined(separator: ","),
      "quantized_nodes": String(engine.quantizedNodes.count),
    ]
    for (key, value) in setup?.manifestEntries ?? [:] { result[key] = value }
    for (method, cosine) in c.candidateCosines {
      result["candidate_cosine.\(method)"] = String(format: "%.6f", cosine)
    }
    return result
  }
}
