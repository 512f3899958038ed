import Foundation
import TestSupport
import Testing

@testable import Eval

@Suite struct MergeTests {
  let samples = 250

  func makeShards(_ root: URL, count: Int) throws -> [URL] {
    try (0..<count).map { i in
      let directory = root.appendingPathComponent("shard-\(i)")
      try Fixture.completeRun(
        sampleCount: samples, shard: Shard(index: i, count: count), directory: directory)
      return directory
    }
  }

  @Test func mergedShardsEqualTheUnshardedRunByteForByte() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let whole = root.appendingPathComponent("whole")
    let reference = try Fixture.completeRun(sampleCount: samples, shard: .whole, directory: whole)
    let shards = try makeShards(root, count: 3)
    let out = root.appendingPathComponent("merged")
    // Shards in scrambled order: the merge orders them itself.
    let merged = try ShardMerge.merge(
      [shards[2], shards[0], shards[1]], into: out, commandLine: ["imagenet-eval", "merge"],
      classNames: Fixture.classNames)

    #expect(merged.metrics.samples == samples)
    #expect(merged.metrics.paired?.flips.rightToWrong ?? 0 > 0)
    #expect(
      try JSONEncoder.canonical.encode(merged.metrics)
        == JSONEncoder.canonical.encode(reference.metrics))
    #expect(
      try Fixture.metricsBytes(out.appendingPathComponent(Summary.fileName))
        == Fixture.metricsBytes(whole.appendingPathComponent(Summary.fileName)))
    #expect(
      try Data(contentsOf: out.appendingPathComponent(ResultLog.recordsFileName))
        == Data(contentsOf: whole.appendingPathComponent(ResultLog.recordsFileName)))
    #expect(merged.provenance.run == reference.provenance.run)
    #expect(merged.provenance.wallSeconds == 4.5)
    #expect(merged.provenance.mergedFrom == shards.map(\.path))
    for file in [MarkdownReport.fileName, HTMLReport.fileName] {
      #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path))
    }
  }

  @Test func aMissingShardIsAGap() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let shards = try makeShards(root, count: 4)
    let error = try #require(throws: EvalError.self) {
      try ShardMerge.union(of: [shards[0], shards[1], shards[3]])
    }
    #expect(error.kind == .inconsistentRun)
    #expect(error.message.contains("gap: shard 2/4 missing"))
  }

  @Test func theSameShardTwiceIsAnOverlap() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let shards = try makeShards(root, count: 2)
    let error = try #require(throws: EvalError.self) {
      try ShardMerge.union(of: [shards[0], shards[1], shards[1]])
    }
    #expect(error.message.contains("overlap: shard 1/2 is given twice"))
  }

  @Test func shardsOfDifferentRunsAreRefused() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let shards = try makeShards(root, count: 2)
    // Rewrite shard 1's manifest as if it had used another label file.
    let url = shards[1].appendingPathComponent(ResultLog.manifestFileName)
    var manifest = try RunManifest.read(from: url)
    manifest.labelSource = "LOC_val_solution.csv"
    try manifest.write(to: url)
    let error = try #require(throws: EvalError.self) { try ShardMerge.union(of: shards) }
    #expect(error.kind == .inconsistentRun)
    #expect(error.message.contains("label_source: 'synthetic' vs 'LOC_val_solution.csv'"))
    #expect(error.message.contains(shards[1].path))
  }

  @Test func missingSamplesInsideAShardAreAGap() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let shards = try makeShards(root, count: 2)
    let url = shards[0].appendingPathComponent(ResultLog.recordsFileName)
    var lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
    lines.remove(at: 10)  // sample 20
    try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
    let error = try #require(throws: EvalError.self) { try ShardMerge.union(of: shards) }
    #expect(error.message.contains("gap in shard 0/2"))
    #expect(error.message.contains("1 samples missing (indices 20)"))
  }

  @Test func anUnfinishedShardIsRefused() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let shards = try makeShards(root, count: 2)
    try FileManager.default.removeItem(
      at: shards[1].appendingPathComponent(ResultLog.completionFileName))
    let error = try #require(throws: EvalError.self) { try ShardMerge.union(of: shards) }
    #expect(error.message.contains("did not finish"))
  }

  @Test func differentShardCountsAreRefused() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let a = try makeShards(root.appendingPathComponent("a"), count: 2)
    let b = try makeShards(root.appendingPathComponent("b"), count: 3)
    let error = try #require(throws: EvalError.self) { try ShardMerge.union(of: [a[0], b[1]]) }
    #expect(error.message.contains("split the data the same number of ways"))
  }

  @Test func mergingIntoAnExistingRunIsRefused() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let shards = try makeShards(root, count: 2)
    #expect(throws: EvalError.self) {
      try ShardMerge.merge(shards, into: shards[0], commandLine: [])
    }
  }
}
