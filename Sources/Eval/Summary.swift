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

  enum CodingKeys: String, CodingKey {
    case run
    case toolVersion = "tool_version"
    case commandLine = "command_line"
    case wallSeconds = "wall_seconds"
    case imagesPerSecond = "images_per_second"
    case mergedFrom = "merged_from"
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
    mergedFrom: [String]? = nil
  ) throws -> Summary {
    let metrics = try Metrics.compute(
      records: records, engineNames: manifest.engines, classNames: classNames)
    let summary = Summary(
      metrics: metrics,
      provenance: Provenance(
        run: manifest, commandLine: commandLine, wallSeconds: wallSeconds,
        samples: metrics.samples, mergedFrom: mergedFrom))
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
