import Foundation

/// Combines the output directories of `--shard i/N` runs into the output of one unsharded
/// run, after proving they belong together: the same run identity, every shard exactly once,
/// every shard finished, and every sample of the dataset recorded exactly once.
public enum ShardMerge {
  /// The checked union of the shards.
  public struct Union: Sendable {
    /// The common manifest, with `shard` set to the whole dataset.
    public var manifest: RunManifest
    /// All records, in sample order.
    public var records: [ImageRecord]
    /// Samples in the dataset, as every shard reported.
    public var datasetSampleCount: Int
    /// Wall seconds summed over shards.
    public var wallSeconds: Double
    /// The shard directories, ordered by shard index.
    public var directories: [URL]
  }

  /// Reads and checks the shard directories. Errors are ``EvalError``s of kind
  /// `.inconsistentRun` (different runs, missing or duplicate shards, unfinished shards, gaps,
  /// overlaps) or `.input` (unreadable or malformed files), each naming the directory.
  public static func union(of directories: [URL]) throws -> Union {
    guard !directories.isEmpty else {
      throw EvalError(.input, "merge needs at least one shard directory")
    }
    var shards = [(directory: URL, manifest: RunManifest, completion: RunCompletion)]()
    for directory in directories {
      let manifestURL = directory.appendingPathComponent(ResultLog.manifestFileName)
      guard FileManager.default.fileExists(atPath: manifestURL.path) else {
        throw EvalError(
          .input,
          "\(directory.path) is not a run output directory: no \(ResultLog.manifestFileName)")
      }
      let manifest = try RunManifest.read(from: manifestURL)
      let completionURL = directory.appendingPathComponent(ResultLog.completionFileName)
      guard FileManager.default.fileExists(atPath: completionURL.path) else {
        throw EvalError(
          .inconsistentRun,
          "shard \(manifest.shard) in \(directory.path) did not finish (no \(ResultLog.completionFileName)); resume it with --resume before merging"
        )
      }
      shards.append((directory, manifest, try RunCompletion.read(from: completionURL)))
    }

    let first = shards[0]
    for other in shards.dropFirst() {
      let differences = first.manifest.differences(from: other.manifest, ignoring: ["shard"])
      guard differences.isEmpty else {
        throw EvalError(
          .inconsistentRun,
          "\(other.directory.path) belongs to a different run than \(first.directory.path):\n  "
            + differences.joined(separator: "\n  "))
      }
      guard other.manifest.shard.count == first.manifest.shard.count else {
        throw EvalError(
          .inconsistentRun,
          "\(other.directory.path) is shard \(other.manifest.shard) but \(first.directory.path) is shard \(first.manifest.shard): all shards must split the data the same number of ways"
        )
      }
      guard other.completion.datasetSampleCount == first.completion.datasetSampleCount else {
        throw EvalError(
          .inconsistentRun,
          "\(other.directory.path) saw \(other.completion.datasetSampleCount) dataset samples but \(first.directory.path) saw \(first.completion.datasetSampleCount)"
        )
      }
    }

    let count = first.manifest.shard.count
    var byIndex = [Int: URL]()
    for shard in shards {
      if let previous = byIndex[shard.manifest.shard.index] {
        throw EvalError(
          .inconsistentRun,
          "overlap: shard \(shard.manifest.shard) is given twice (\(previous.path) and \(shard.directory.path))"
        )
      }
      byIndex[shard.manifest.shard.index] = shard.directory
    }
    let missing = (0..<count).filter { byIndex[$0] == nil }
    guard missing.isEmpty else {
      throw EvalError(
        .inconsistentRun,
        "gap: shard\(missing.count > 1 ? "s" : "") \(missing.map { "\($0)/\(count)" }.joined(separator: ", ")) missing; \(count) shards are needed"
      )
    }

    let total = first.completion.datasetSampleCount
    var records = [ImageRecord]()
    records.reserveCapacity(total)
    var wall = 0.0
    for shard in shards.sorted(by: { $0.manifest.shard.index < $1.manifest.shard.index }) {
      let url = shard.directory.appendingPathComponent(ResultLog.recordsFileName)
      let log = try ResultLog.readLog(at: url, shard: shard.manifest.shard, allowTornTail: false)
      let expected = Array(stride(from: shard.manifest.shard.index, to: total, by: count))
      let got = log.records.map(\.index)
      if got != expected {
        let gotSet = Set(got)
        let expectedSet = Set(expected)
        let absent = expected.filter { !gotSet.contains($0) }
        let extra = got.filter { !expectedSet.contains($0) }
        var problems = [String]()
        if !absent.isEmpty {
          problems.append(
            "\(absent.count) samples missing (indices \(absent.prefix(5).map(String.init).joined(separator: ", "))\(absent.count > 5 ? ", …" : ""))"
          )
        }
        if !extra.isEmpty {
          problems.append(
            "\(extra.count) records beyond the \(total)-sample dataset (indices \(extra.prefix(5).map(String.init).joined(separator: ", ")))"
          )
        }
        throw EvalError(
          .inconsistentRun,
          "gap in shard \(shard.manifest.shard) (\(url.path)): \(problems.joined(separator: "; "))")
      }
      records.append(contentsOf: log.records)
      wall += shard.completion.wallSeconds
    }
    records.sort { $0.index < $1.index }
    var manifest = first.manifest
    manifest.shard = .whole
    return Union(
      manifest: manifest, records: records, datasetSampleCount: total, wallSeconds: wall,
      directories: shards.sorted { $0.manifest.shard.index < $1.manifest.shard.index }.map(
        \.directory))
  }

  /// Merges `directories` into `output`, which then looks like the output of one unsharded
  /// run: `run.json`, `predictions.jsonl`, `completion.json`, `summary.json`, `report.md`,
  /// `report.html`. `output` must not already hold a run.
  @discardableResult
  public static func merge(
    _ directories: [URL], into output: URL, commandLine: [String], classNames: [String]? = nil,
    layers: [LayerQuality]? = nil
  ) throws -> Summary {
    let union = try union(of: directories)
    let log = try ResultLog(directory: output, manifest: union.manifest, resume: false)
    try log.append(union.records)
    try log.finish(datasetSampleCount: union.datasetSampleCount, wallSeconds: union.wallSeconds)
    return try RunOutput.write(
      records: union.records, manifest: union.manifest, directory: output,
      commandLine: commandLine, wallSeconds: union.wallSeconds, classNames: classNames,
      layers: layers, mergedFrom: union.directories.map(\.path))
  }
}
