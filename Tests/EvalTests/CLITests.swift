import Foundation
import TestSupport
import Testing

@testable import Eval

/// The documented exit statuses, through the real argument parser.
@Suite struct CLITests {
  @Test func statusesFollowTheScheme() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let shards = try (0..<2).map { i -> URL in
      let directory = root.appendingPathComponent("s\(i)")
      try Fixture.completeRun(
        sampleCount: 60, shard: Shard(index: i, count: 2), directory: directory)
      return directory
    }
    let merged = root.appendingPathComponent("merged")

    #expect(ImagenetEval.exitStatus(arguments: ["--help"]) == 0)
    #expect(ImagenetEval.exitStatus(arguments: ["frobnicate"]) == 1)
    #expect(ImagenetEval.exitStatus(arguments: ["merge", shards[0].path]) == 1)  // no --out
    #expect(
      ImagenetEval.exitStatus(arguments: [
        "merge", root.appendingPathComponent("nope").path, "--out", merged.path,
      ]) == 1)
    // Only one of two shards: a gap.
    #expect(
      ImagenetEval.exitStatus(arguments: ["merge", shards[0].path, "--out", merged.path]) == 4)
    #expect(
      ImagenetEval.exitStatus(arguments: [
        "merge", shards[0].path, shards[1].path, "--out", merged.path,
      ]) == 0)
    let summary = try Summary.read(from: merged.appendingPathComponent(Summary.fileName))
    #expect(summary.metrics.samples == 60)
    #expect(summary.provenance.mergedFrom?.count == 2)
    // Merging again into the same directory would mix runs.
    #expect(
      ImagenetEval.exitStatus(arguments: [
        "merge", shards[0].path, shards[1].path, "--out", merged.path,
      ]) == 4)

    #expect(
      ImagenetEval.exitStatus(arguments: [
        "table", merged.path, shards[0].appendingPathComponent(Summary.fileName).path,
      ]) == 0)
    #expect(
      ImagenetEval.exitStatus(arguments: [
        "table", root.appendingPathComponent("missing.json").path,
      ]) == 1)
    let badBench = root.appendingPathComponent("bench.json")
    try Data("{\"model\": 1}".utf8).write(to: badBench)
    #expect(
      ImagenetEval.exitStatus(arguments: ["table", merged.path, "--bench", badBench.path]) == 1)
  }

  @Test func errorKindsMapToStatuses() {
    #expect(EvalError(.input, "x").exitCode == EvalExitStatus.inputError)
    #expect(EvalError(.internal, "x").exitCode.rawValue == 2)
    #expect(EvalError(.inconsistentRun, "x").exitCode.rawValue == 4)
    #expect(EvalExitStatus.dropGateExceeded.rawValue == 3)
  }
}
