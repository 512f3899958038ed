import ArgumentParser
import Foundation

/// `imagenet-eval table a/summary.json b/summary.json … [--bench bench.json …]`.
struct TableCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "table",
    abstract: "Print the model-zoo Markdown accuracy table of several runs.",
    discussion: """
      One row per summary.json. Each --bench file (JSON: {"model", "model_sha256", \
      "results": [{"engine", "batch_size", "images_per_second", "latency_ms"}]}) adds \
      throughput columns to the row of the model with the same SHA-256.
      """)

  @Argument(help: "summary.json files (or run directories holding one), one row each.")
  var summaries: [String]

  @Option(name: .customLong("bench"), help: "bench.json throughput results; repeatable.")
  var benches: [String] = []

  func run() throws {
    let loaded = try summaries.map { path -> Summary in
      var url = URL(fileURLWithPath: path)
      var isDirectory: ObjCBool = false
      if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory),
        isDirectory.boolValue
      {
        url.appendPathComponent(Summary.fileName)
      }
      return try Summary.read(from: url)
    }
    let bench = try benches.map { try BenchReport.read(from: URL(fileURLWithPath: $0)) }
    print(try AccuracyTable.render(summaries: loaded, benches: bench), terminator: "")
  }
}
