import Foundation

/// The tool's version, written into every summary.
public enum ToolInfo {
  /// Semantic version of `imagenet-eval`.
  public static let version = "0.1.0"
}

/// Where the numbers of a summary came from: enough to reproduce the run.
public struct Provenance: Codable, Sendable, Equatable {
  /// The run identity: model path and SHA-256, parameter count, input size, dataset, labels,
  /// preprocessing settings, calibration, engines and their versions, shard.
  public var run: RunManifest
  /// `imagenet-eval` version.
  public var toolVersion: String
  /// The command line that produced this summary.
  public var commandLine: [String]
  /// Wall seconds of the evaluation (for a merge: summed over shards, i.e. machine time).
  public var wallSeconds: Double
  /// Samples per wall second.
  public var imagesPerSecond: Double?
  /// The directories merged into this summary, in shard order; nil for a direct run.
  public var mergedFrom: [String]?
  /// Where this session's time went (nil for a merge); when present, `imagesPerSecond`
  /// is the evaluation rate: samples of this session over `timings.evaluation`.
  public var timings: PhaseTimings?
  /// Configuration keys not modelled and other caveats of the run (e.g. mapper YAML keys).
  public var warnings: [String]?
  /// How this session scheduled its engines (`--engine-schedule`, the auto trial's timings);
  /// nil for a merge and for summaries written before it was recorded.
  public var execution: EngineExecution?

  /// Creates provenance; `imagesPerSecond` is derived from `samples` and `wallSeconds`.
  public init(
    run: RunManifest, commandLine: [String], wallSeconds: Double, samples: Int,
    mergedFrom: [String]? = nil, toolVersion: String = ToolInfo.version
  ) {
    self.run = run
    self.toolVersion = toolVersion
    self.commandLine = commandLine
    self.wallSeconds = wallSeconds
    self.imagesPerSecond = wallSeconds > 0 ? Double(samples) / wallSeconds : nil
    self.mergedFrom = mergedFrom
  }

  /// Provenance of a direct run: `imagesPerSecond` is `timings.evaluatedSamples` over
  /// `timings.evaluation` (model loading, calibration and engine building excluded), while
  /// `wallSeconds` stays the whole wall time.
  public init(
    run: RunManifest, commandLine: [String], wallSeconds: Double, timings: PhaseTimings,
    warnings: [String]? = nil, toolVersion: String = ToolInfo.version
  ) {
    self.init(
      run: run, commandLine: commandLine, wallSeconds: wallSeconds, samples: 0,
      toolVersion: toolVersion)
    imagesPerSecond =
      timings.evaluation > 0 ? Double(timings.evaluatedSamples) / timings.evaluation : nil
    self.timings = timings
    self.warnings = warnings
  }

  enum CodingKeys: String, CodingKey {
    case run
    case toolVersion = "tool_version"
    case commandLine = "command_line"
    case wallSeconds = "wall_seconds"
    case imagesPerSecond = "images_per_second"
    case mergedFrom = "merged_from"
    case timings, warnings, execution
  }
}

/// Wall seconds of each phase of one `run` session.
public struct PhaseTimings: Codable, Sendable, Equatable {
  /// Reading and checking the ONNX model.
  public var modelLoad: Double
  /// Running the float model on the calibration images and choosing thresholds (0 without
  /// an int8 engine).
  public var calibration: Double
  /// Building every engine (for int8: quantising and binding its kernels).
  public var engineBuild: Double
  /// From the first image read to the last record written: decoding, preprocessing,
  /// inference, scoring and logging.
  public var evaluation: Double
  /// The whole session, summary and reports included.
  public var total: Double
  /// Samples (evaluated or skipped) processed in this session's evaluation.
  public var evaluatedSamples: Int
  /// Images decoded in this session's evaluation (each once, whatever the engine count).
  public var decodedImages: Int?
  /// The int8 layer-wise comparison with float on the first calibration batch (reference
  /// evaluator; 0 without an int8 engine).
  public var layerReport: Double?

  /// Creates timings.
  public init(
    modelLoad: Double, calibration: Double, engineBuild: Double, evaluation: Double,
    total: Double, evaluatedSamples: Int, decodedImages: Int? = nil, layerReport: Double? = nil
  ) {
    self.modelLoad = modelLoad
    self.calibration = calibration
    self.engineBuild = engineBuild
    self.evaluation = evaluation
    self.total = total
    self.evaluatedSamples = evaluatedSamples
    self.decodedImages = decodedImages
    self.layerReport = layerReport
  }

  enum CodingKeys: String, CodingKey {
    case calibration, evaluation, total
    case modelLoad = "model_load"
    case engineBuild = "engine_build"
    case evaluatedSamples = "evaluated_samples"
    case decodedImages = "decoded_images"
    case layerReport = "layer_report"
  }
}

/// `summary.json`: the ``Metrics`` fields at the top level plus `provenance`.
///
/// Keys are sorted and every value is a deterministic function of the records and the
/// provenance, so two runs with equal records have byte-identical metrics.
public struct Summary: Codable, Sendable, Equatable {
  /// Everything measured.
  public var metrics: Metrics
  /// Where it came from.
  public var provenance: Provenance

  /// The summary file name.
  public static let fileName = "summary.json"

  /// Creates a summary.
  public init(metrics: Metrics, provenance: Provenance) {
    self.metrics = metrics
    self.provenance = provenance
  }

  private enum ProvenanceKey: String, CodingKey { case provenance }

  public init(from decoder: Decoder) throws {
    metrics = try Metrics(from: decoder)
    provenance = try decoder.container(keyedBy: ProvenanceKey.self)
      .decode(Provenance.self, forKey: .provenance)
  }

  public func encode(to encoder: Encoder) throws {
    try metrics.encode(to: encoder)
    var container = encoder.container(keyedBy: ProvenanceKey.self)
    try container.encode(provenance, forKey: .provenance)
  }

  /// The canonical bytes of `summary.json`.
  public func jsonData() throws -> Data {
    var data = try JSONEncoder.canonical.encode(self)
    data.append(0x0A)
    return data
  }

  /// Reads a `summary.json`, naming the file in any error.
  public static func read(from url: URL) throws -> Summary {
    try readJSON(Summary.self, from: url, describedAs: "summary ")
  }

  /// True when the primary candidate lost more than `maxDrop` top-1 points; the CLI then
  /// exits with ``EvalExitStatus/dropGateExceeded``.
  public func exceedsDrop(_ maxDrop: Double) -> Bool {
    guard let drop = metrics.paired?.top1Drop else { return false }
    return drop > maxDrop
  }
}

/// Writes the outputs of a finished run into its directory: `summary.json`, `report.md` and
/// `report.html`. The future `run` command and `merge` both end here.
public enum RunOutput {
  /// Computes the summary of `records` and writes all three files into `directory`.
  @discardableResult
  public static func write(
    records: [ImageRecord], manifest: RunManifest, directory: URL, commandLine: [String],
    wallSeconds: Double, classNames: [String]? = nil, layers: [LayerQuality]? = nil,
    mergedFrom: [String]? = nil, timings: PhaseTimings? = nil, warnings: [String]? = nil,
    execution: EngineExecution? = nil
  ) throws -> Summary {
    let metrics = try Metrics.compute(
      records: records, engineNames: manifest.engines, classNames: classNames)
    var provenance =
      timings.map {
        Provenance(
          run: manifest, commandLine: commandLine, wallSeconds: wallSeconds, timings: $0,
          warnings: warnings)
      }
      ?? Provenance(
        run: manifest, commandLine: commandLine, wallSeconds: wallSeconds,
        samples: metrics.samples, mergedFrom: mergedFrom)
    if timings == nil { provenance.warnings = warnings }
    provenance.execution = execution
    let summary = Summary(metrics: metrics, provenance: provenance)
    try writeAtomically(summary.jsonData(), to: directory.appendingPathComponent(Summary.fileName))
    try writeAtomically(
      Data(MarkdownReport.render(summary).utf8),
      to: directory.appendingPathComponent(MarkdownReport.fileName))
    try writeAtomically(
      Data(HTMLReport.render(summary, layers: layers).utf8),
      to: directory.appendingPathComponent(HTMLReport.fileName))
    return summary
  }
}
