import Foundation

/// Throughput measurements of one model, as `bench` writes them (`bench.json`):
///
/// ```json
/// {"model": "FasterNet T0", "model_sha256": "ab12…",
///  "results": [{"engine": "float", "batch_size": 1, "images_per_second": 212.5, "latency_ms": 4.7}]}
/// ```
///
/// `latency_ms` is the mean wall time of one batch.
public struct BenchReport: Codable, Sendable, Equatable {
  /// One engine at one batch size.
  public struct Entry: Codable, Sendable, Equatable {
    /// Engine name, e.g. `float` or `int8`.
    public var engine: String
    /// Images per batch.
    public var batchSize: Int
    /// Throughput.
    public var imagesPerSecond: Double
    /// Mean time of one batch, in milliseconds.
    public var latencyMS: Double

    /// Creates an entry.
    public init(engine: String, batchSize: Int, imagesPerSecond: Double, latencyMS: Double) {
      self.engine = engine
      self.batchSize = batchSize
      self.imagesPerSecond = imagesPerSecond
      self.latencyMS = latencyMS
    }

    enum CodingKeys: String, CodingKey {
      case engine
      case batchSize = "batch_size"
      case imagesPerSecond = "images_per_second"
      case latencyMS = "latency_ms"
    }
  }

  /// Display name of the model.
  public var model: String
  /// SHA-256 of the ONNX file, matching the summary's `provenance.run.model.sha256`.
  public var modelSHA256: String
  /// The measurements.
  public var results: [Entry]
  /// Where the ONNX file was read from (not part of the identity: the file may move).
  public var modelPath: String?
  /// How the int8 engine was quantized (calibration settings, or the imported model's own
  /// quantization), as `summary.json` records it; nil without an int8 engine.
  public var int8: [String: String]?

  /// Creates a report.
  public init(model: String, modelSHA256: String, results: [Entry]) {
    self.model = model
    self.modelSHA256 = modelSHA256
    self.results = results
  }

  enum CodingKeys: String, CodingKey {
    case model, results, int8
    case modelSHA256 = "model_sha256"
    case modelPath = "model_path"
  }

  /// Reads a `bench.json`, naming the file in any error.
  public static func read(from url: URL) throws -> BenchReport {
    try readJSON(BenchReport.self, from: url, describedAs: "bench file ")
  }
}

/// The combined Markdown accuracy table of several models (`imagenet-eval table`).
public enum AccuracyTable {
  /// One model-zoo row per summary, in the given order; with bench reports, one extra column
  /// per engine and batch size (`img/s (ms per batch)`), matched to summaries by model SHA-256.
  public static func render(summaries: [Summary], benches: [BenchReport] = []) throws -> String {
    let hashes = Set(summaries.map(\.provenance.run.model.sha256))
    for bench in benches where !hashes.contains(bench.modelSHA256) {
      throw EvalError(
        .input,
        "bench results for \(bench.model) (sha256 \(bench.modelSHA256)) match none of the summaries"
      )
    }
    var columns = [(engine: String, batch: Int)]()
    for bench in benches {
      for entry in bench.results
      where !columns.contains(where: { $0 == (entry.engine, entry.batchSize) }) {
        columns.append((entry.engine, entry.batchSize))
      }
    }
    columns.sort { ($0.engine, $0.batch) < ($1.engine, $1.batch) }

    let zoo = MarkdownReport.zooHeader.split(separator: "\n").map(String.init)
    var header = zoo[0]
    var rule = zoo[1]
    for column in columns {
      header += " \(MarkdownReport.escape(column.engine)) batch \(column.batch) img/s (ms) |"
      rule += " --- |"
    }
    var lines = [header, rule]
    for summary in summaries {
      var row = MarkdownReport.zooRow(summary)
      let sha = summary.provenance.run.model.sha256
      let entries = benches.filter { $0.modelSHA256 == sha }.flatMap(\.results)
      for column in columns {
        if let entry = entries.first(where: {
          $0.engine == column.engine && $0.batchSize == column.batch
        }) {
          row += String(format: " %.1f (%.2f) |", entry.imagesPerSecond, entry.latencyMS)
        } else {
          row += " n/a |"
        }
      }
      lines.append(row)
    }
    return lines.joined(separator: "\n") + "\n"
  }
}
