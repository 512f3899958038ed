import Foundation
import Model
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

  // Negative values are spelled `--option=-1`: the parser reads a separate `-1` as an option.
  @Test(
    "count options are bounded with the same words in every command",
    arguments: [
      (["bench", "--model", "m.onnx", "--threads", "0"], "--threads must be at least 1, got 0"),
      (
        ["infer", "--model", "m.onnx", "--input", "x", "--output", "y", "--threads=-2"],
        "--threads must be at least 1, got -2"
      ),
      (
        ["run", "--model", "m.onnx", "--data", "d.tar", "--threads", "0"],
        "--threads must be at least 1, got 0"
      ),
      (
        ["run", "--model", "m.onnx", "--data", "d.tar", "--batch", "0"],
        "--batch must be at least 1, got 0"
      ),
      (
        ["quantize", "--model", "m.onnx", "--output", "q.onnx", "--data", "d.tar", "--batch", "0"],
        "--batch must be at least 1, got 0"
      ),
      (
        [
          "quantize", "--model", "m.onnx", "--output", "q.onnx", "--data", "d.tar", "--threads",
          "0",
        ],
        "--threads must be at least 1, got 0"
      ),
      (
        ["run", "--model", "m.onnx", "--data", "d.tar", "--calib-count", "0"],
        "--calib-count must be at least 1, got 0"
      ),
      (["inspect", "--data", "d.tar", "--dump=-1"], "--dump must not be negative, got -1"),
      (["inspect", "--data", "d.tar", "--limit=-3"], "--limit must not be negative, got -3"),
      (
        ["inspect", "--data", "d.tar", "--label-offset=-1"],
        "--label-offset must not be negative, got -1"
      ),
      (["inspect", "--data", "d.tar", "--workers", "0"], "--workers must be at least 1, got 0"),
    ])
  func countBounds(arguments: [String], message: String) {
    do {
      _ = try ImagenetEval.parseAsRoot(arguments)
      Issue.record("\(arguments) was accepted")
    } catch {
      #expect(ImagenetEval.fullMessage(for: error).contains(message), "\(arguments)")
    }
    #expect(ImagenetEval.exitStatus(arguments: arguments) == 1)
  }

  @Test func engineFailuresBecomeInputErrorsNamingTheirContext() {
    let kept = EvalError(.inconsistentRun, "already explained")
    #expect(EvalError(modelFailure: kept, "m.onnx: cannot build") == kept)
    let model = EvalError(
      modelFailure: ModelError(.unsupportedOperators, "node 'x' (Foo) is not supported"),
      "m.onnx: cannot build the float engine")
    #expect(model.kind == .input)
    #expect(
      model.message == "m.onnx: cannot build the float engine: node 'x' (Foo) is not supported")
    let other = EvalError(modelFailure: CocoaError(.fileNoSuchFile), "m.onnx: calibration failed")
    #expect(other.kind == .input)
    #expect(other.message == "m.onnx: calibration failed: \(CocoaError(.fileNoSuchFile))")
  }

  @Test func errorKindsMapToStatuses() {
    #expect(EvalError(.input, "x").exitCode == EvalExitStatus.inputError)
    #expect(EvalError(.internal, "x").exitCode.rawValue == 2)
    #expect(EvalError(.inconsistentRun, "x").exitCode.rawValue == 4)
    #expect(EvalExitStatus.dropGateExceeded.rawValue == 3)
  }
}
