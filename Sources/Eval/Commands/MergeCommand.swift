import ArgumentParser
import Dataset
import Foundation

/// `imagenet-eval merge DIR… --out DIR`: the summary of one unsharded run from its shards.
struct MergeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "merge",
    abstract: "Combine the output directories of --shard i/N runs into one run's output.",
    discussion: """
      Refuses (exit 4) shards of different runs, missing or duplicate shards, unfinished \
      shards and missing samples. The merged directory holds run.json, predictions.jsonl, \
      summary.json, report.md and report.html, with the same metrics as an unsharded run.
      """)

  @Argument(help: "Shard output directories, in any order.")
  var directories: [String]

  @Option(help: "Directory to write the merged run to (must not already hold a run).")
  var out: String

  @Option(
    help:
      "Class names (synset_words.txt format or one per line); default labels/synset_words.txt when present."
  )
  var classNames: String?

  @Option(
    help:
      "Per-layer SQNR of the int8 engine (JSON array of {node, sqnr_db, cosine}) for report.html.")
  var layers: String?

  /// The shipped ImageNet-1k names, offset as the first shard's run was (what `run` used).
  func shippedNames() throws -> [String]? {
    guard let first = directories.first else { return nil }
    let manifest = try RunManifest.read(
      from: URL(fileURLWithPath: first).appendingPathComponent(ResultLog.manifestFileName))
    let offset = manifest.preprocessing["label_offset"].flatMap { Int($0) } ?? 0
    return ClassNames.shortNames(of: try ClassIndex.imageNet1k(), labelOffset: offset)
  }

  func run() throws {
    let names =
      try classNames.map { try ClassNames.load(from: URL(fileURLWithPath: $0)) }
      ?? shippedNames()
    let layerQuality = try layers.map { path -> [LayerQuality] in
      let url = URL(fileURLWithPath: path)
      do {
        return try JSONDecoder.canonical.decode([LayerQuality].self, from: Data(contentsOf: url))
      } catch {
        throw EvalError(.input, "cannot read per-layer SQNR \(url.path): \(describe(error))")
      }
    }
    let summary = try ShardMerge.merge(
      directories.map { URL(fileURLWithPath: $0) }, into: URL(fileURLWithPath: out),
      commandLine: CommandLine.arguments, classNames: names, layers: layerQuality)
    print(
      "merged \(directories.count) shards: \(summary.metrics.samples) samples, \(summary.metrics.images) evaluated -> \(out)"
    )
  }
}
