import Dataset
import Foundation
import Model
import TestSupport
import Testing

@testable import Eval

/// The `run` command end to end on generated data with a tiny model (engines checked against
/// each other and against hand-known answers), plus its errors and exit statuses.
@Suite(
  .requiresPython)
struct RunTests {
  typealias Setup = RunFixture.Workspace

  /// A tiny model and a 10-image shard (one not a JPEG) for one test.
  func makeSetup(biasClass: Int? = nil, count: Int = 10, broken: Set<Int> = [3]) throws -> Setup {
    try .make("run-tests", count: count, broken: broken, biasClass: biasClass)
  }

  func run(_ setup: Setup, out: String, _ extra: [String]) -> Int32 {
    ImagenetEval.exitStatus(
      arguments: [
        "run", "--model", setup.model.path, "--data", setup.data.path, "--out", out,
        "--quiet",
      ] + RunFixture.tinyPreprocess + extra)
  }

  @Test func floatAndReferenceAgreeAndTheShortLastBatchIsPadded() throws {
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let out = setup.path("a")
    // 9 valid images at batch 4: batches of 4, 4 (one skip among them) and a short last one.
    #expect(run(setup, out: out, ["--engines", "float,reference", "--batch", "4"]) == 0)
    let summary = try Summary.read(
      from: URL(fileURLWithPath: out).appendingPathComponent("summary.json"))
    #expect(summary.metrics.samples == 10)
    #expect(summary.metrics.images == 9)
    #expect(summary.metrics.skipped.total == 1)
    #expect(summary.metrics.skipped.samples.first?.key == "sample0003")
    let paired = try #require(summary.metrics.paired)
    #expect(paired.agreement == 100)
    #expect(paired.top1Drop == 0)
    #expect((paired.cosine ?? 0) > 0.999_999)
    let log = try ResultLog.readLog(
      at: URL(fileURLWithPath: out).appendingPathComponent("predictions.jsonl"), shard: .whole,
      allowTornTail: false)
    #expect(log.records.map(\.index) == Array(0..<10))
    for record in log.records where record.skip == nil {
      let float = try #require(record.engines?["float"])
      let reference = try #require(record.engines?["reference"])
      #expect(float.top5 == reference.top5, "\(record.key)")
    }
    // The manifest carries the provenance the brief asks for.
    let manifest = summary.provenance.run
    #expect(manifest.model.inputShape == [1, 3, 32, 32])
    #expect(manifest.model.parameterCount == 8 * 27 + 8 + 10 * 8 + 10)
    #expect(manifest.model.sha256 == (try SHA256.hexDigest(ofFile: setup.model)))
    #expect(
      manifest.preprocessing["cropSize"] == "32" || manifest.preprocessing["crop_size"] == "32")
    #expect(manifest.dataset.contains("data.tar ("))
    #expect(manifest.engineVersions["float"]?["batch_size"] == "4")
    for file in ["report.md", "report.html", "completion.json", "run.json"] {
      #expect(FileManager.default.fileExists(atPath: out + "/" + file), "\(file)")
    }
  }

  @Test func theBatchSizeDoesNotChangeTheRecords() throws {
    let setup = try makeSetup(broken: [])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    #expect(run(setup, out: setup.path("b1"), ["--batch", "1"]) == 0)
    #expect(run(setup, out: setup.path("b3"), ["--batch", "3"]) == 0)
    let one = try ResultLog.readLog(
      at: URL(fileURLWithPath: setup.path("b1") + "/predictions.jsonl"), shard: .whole,
      allowTornTail: false)
    let three = try ResultLog.readLog(
      at: URL(fileURLWithPath: setup.path("b3") + "/predictions.jsonl"), shard: .whole,
      allowTornTail: false)
    #expect(one.records.count == 10)
    #expect(one.records.map(\.key) == three.records.map(\.key))
    #expect(
      one.records.map { $0.engines?["float"]?.top5 }
        == three.records.map {
          $0.engines?["float"]?.top5
        })
  }

  @Test func shardsMergeIntoTheUnshardedRun() throws {
    // 11 samples, the one at source index 3 not a JPEG: shards of 6 and 5 samples.
    let setup = try makeSetup(count: 11, broken: [3])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    #expect(run(setup, out: setup.path("all"), ["--batch", "4"]) == 0)
    #expect(run(setup, out: setup.path("s1"), ["--batch", "4", "--shard", "1/2"]) == 0)
    #expect(run(setup, out: setup.path("s0"), ["--batch", "4", "--shard", "0/2"]) == 0)
    let merge = ["merge", setup.path("s1"), setup.path("s0"), "--out", setup.path("merged")]
    #expect(ImagenetEval.exitStatus(arguments: merge) == 0)
    let whole = try Summary.read(from: URL(fileURLWithPath: setup.path("all") + "/summary.json"))
    let merged = try Summary.read(
      from: URL(fileURLWithPath: setup.path("merged") + "/summary.json"))
    #expect(merged.metrics == whole.metrics)
    #expect(merged.metrics.skipped.samples.map(\.index) == [3])
    let shard1 = try ResultLog.readLog(
      at: URL(fileURLWithPath: setup.path("s1") + "/predictions.jsonl"),
      shard: try Shard(index: 1, count: 2), allowTornTail: false)
    #expect(shard1.records.map(\.index) == [1, 3, 5, 7, 9])
    // A shard alone is not the data set: merging it by itself is refused as a gap.
    let alone = ["merge", setup.path("s0"), "--out", setup.path("alone")]
    #expect(ImagenetEval.exitStatus(arguments: alone) == EvalExitStatus.inconsistentRun.rawValue)
  }

  @Test func int8RunsBesideFloatAndRecordsItsCalibration() throws {
    // 10 samples, one not a JPEG: 9 calibration images are there although 20 are asked for.
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let out = setup.path("int8")
    let arguments = ["--engines", "float,int8", "--batch", "4", "--calib-count", "20"]
    #expect(run(setup, out: out, arguments + ["--calib-method", "median"]) == 1)
    #expect(run(setup, out: out, arguments + ["--float-nodes", "no_such_node"]) == 1)
    #expect(run(setup, out: out, arguments + ["--calib-method", "max"]) == 0)
    let summary = try Summary.read(
      from: URL(fileURLWithPath: out).appendingPathComponent("summary.json"))
    let calibration = try #require(summary.provenance.run.calibration)
    #expect(calibration["method"] == "max")
    #expect(calibration["images"] == "9")
    #expect(calibration["requested_images"] == "20")
    #expect(calibration["source"]?.contains("evaluation data") == true)
    let paired = try #require(summary.metrics.paired)
    #expect(paired.candidate == "int8")
    #expect(paired.images == 9)
    #expect((paired.cosine ?? 0) > 0.9)
  }

  @Test func maxDropGate() throws {
    // Every label is class 7 and the model's bias makes 7 every image's top-1: float is 100%.
    let setup = try makeSetup(biasClass: 7, broken: [])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    EngineFactory.register("demoted") { graph, batch, threads, strict in
      DemotingEngine(
        name: "demoted",
        wrapping: try FloatEngine(graph: graph, batchSize: batch, threads: threads, strict: strict))
    }
    defer { EngineFactory.unregister("demoted") }
    #expect(
      run(setup, out: setup.path("same"), ["--engines", "float,reference", "--max-drop", "0.5"])
        == 0)
    #expect(
      run(setup, out: setup.path("demoted"), ["--engines", "float,demoted", "--max-drop", "0.5"])
        == 3)
    let summary = try Summary.read(
      from: URL(fileURLWithPath: setup.path("demoted") + "/summary.json"))
    #expect(summary.metrics.engines["float"]?.top1 == 100)
    #expect(summary.metrics.engines["demoted"]?.top1 == 0)
    #expect(summary.metrics.paired?.top1Drop == 100)
    // The outputs are written before the gate decides.
    #expect(summary.exceedsDrop(0.5))
    // A drop within the allowance passes.
    #expect(
      run(setup, out: setup.path("loose"), ["--engines", "float,demoted", "--max-drop", "100"])
        == 0)
  }

  @Test func inputErrorsExitOne() throws {
    let setup = try makeSetup(broken: [])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let notONNX = setup.root.appendingPathComponent("notes.onnx")
    try Data("hello".utf8).write(to: notONNX)
    func status(_ arguments: [String]) -> Int32 {
      ImagenetEval.exitStatus(arguments: ["run", "--quiet"] + arguments)
    }
    let data = ["--data", setup.data.path] + RunFixture.tinyPreprocess
    #expect(
      status(["--model", setup.root.path + "/missing.onnx", "--out", setup.path("m")] + data) == 1)
    #expect(status(["--model", notONNX.path, "--out", setup.path("n")] + data) == 1)
    #expect(status(["--model", setup.root.path, "--out", setup.path("d")] + data) == 1)
    // Preprocessing produces 48×48 but the model takes 32×32.
    #expect(
      status([
        "--model", setup.model.path, "--data", setup.data.path, "--out", setup.path("s"),
        "--resize", "48", "--crop", "48",
      ]) == 1)
    #expect(!FileManager.default.fileExists(atPath: setup.path("s") + "/run.json"))
    #expect(
      status(
        ["--model", setup.model.path, "--out", setup.path("x")] + data + [
          "--engines", "float,bogus",
        ]) == 1)
    #expect(
      status(["--model", setup.model.path, "--out", setup.path("g")] + data + ["--max-drop", "1"])
        == 1)
    #expect(
      status(["--model", setup.model.path, "--out", setup.path("b")] + data + ["--batch", "0"]) == 1
    )
    let message = try #require(
      throws: EvalError.self,
      performing: {
        try EngineFactory.makeEngine(
          named: "int8",
          graph: Graph(
            values: [], nodes: [], constants: [:], inputs: [], declaredInputShapes: [], outputs: [],
            opsetVersion: 13), batchSize: 1, threads: nil, strict: false, modelPath: "m.onnx")
      })
    // Commands without images (infer, bench) cannot calibrate: a clear error, not a guess.
    #expect(message.message.contains("calibration images"))
  }

  @Test func theModelInputIsCheckedBeforeCalibration() throws {
    let setup = try makeSetup(broken: [])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    // Opening the calibration images would fail (the file is missing): the shape check comes
    // first, so its message is the one reported.
    var command = try ImagenetEval.parseAsRoot([
      "run", "--model", setup.model.path, "--data", setup.data.path, "--out", setup.path("s"),
      "--quiet", "--engines", "float,int8", "--calib", setup.path("missing.tar"),
      "--resize", "48", "--crop", "48",
    ])
    let error = try #require(throws: EvalError.self) { try command.run() }
    #expect(error.message.contains("the model input is [3, 32, 32] per image"), "\(error)")
    #expect(error.message.contains("--crop 32"))
    #expect(!FileManager.default.fileExists(atPath: setup.path("s")))
  }

  @Test func shapeMismatchMessageNamesBothShapes() throws {
    let setup = try makeSetup(broken: [])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let graph = try EngineFactory.loadModel(at: setup.model.path)
    let engine = try EngineFactory.makeEngine(
      named: "float", graph: graph, batchSize: 2, threads: 1, strict: false, modelPath: "tiny.onnx")
    let config = try PreprocessConfigFactory.make(crop: 48)
    let error = try #require(
      throws: EvalError.self,
      performing: {
        try ModelInput.check([engine], against: config, batchSize: 2, modelPath: "tiny.onnx")
      })
    #expect(error.message.contains("[3, 32, 32]"))
    #expect(error.message.contains("[3, 48, 48]"))
    #expect(error.message.contains("--crop 32"))
  }

  @Test func resumeRefusesADifferentRunAndContinuesTheSameOne() throws {
    let setup = try makeSetup(broken: [])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let out = setup.path("r")
    #expect(run(setup, out: out, ["--limit", "4", "--batch", "2"]) == 0)
    // Without --resume the directory is taken.
    #expect(run(setup, out: out, ["--batch", "2"]) == 4)
    // Another engine list is another run.
    #expect(
      run(setup, out: out, ["--batch", "2", "--resume", "--engines", "float,reference"]) == 4)
    // Another batch size is another run too (the records' numbering depends on it).
    #expect(run(setup, out: out, ["--batch", "5", "--resume"]) == 4)
    #expect(run(setup, out: out, ["--batch", "2", "--resume"]) == 0)
    let resumed = try Summary.read(from: URL(fileURLWithPath: out + "/summary.json"))
    #expect(run(setup, out: setup.path("full"), ["--batch", "2"]) == 0)
    let full = try Summary.read(from: URL(fileURLWithPath: setup.path("full") + "/summary.json"))
    #expect(resumed.metrics == full.metrics)
    #expect(resumed.metrics.samples == 10)
  }

  @Test func progressLine() {
    let progress = ProgressReporter(engineNames: ["float", "int8"], total: 100, enabled: false)
    progress.add(
      [
        ImageRecord(
          index: 0, key: "a", label: 3,
          engines: [
            "float": EnginePrediction(top5: [3], scores: [1]),
            "int8": EnginePrediction(top5: [4], scores: [1]),
          ]),
        .skipped(index: 1, key: "b", label: nil, reason: "decode", detail: "b: bad"),
      ], processed: 2)
    let line = progress.line()
    #expect(line.hasPrefix("2/100 images | "))
    #expect(line.contains("top-1 float 100.00%, int8 0.00%"))
    #expect(line.contains("ETA "))
    #expect(ProgressReporter.duration(3723) == "1h02m03s")
    #expect(ProgressReporter.duration(245) == "4m05s")
    #expect(ProgressReporter.duration(6.4) == "6s")
  }
}

/// Builds a preprocessing configuration without going through the CLI.
enum PreprocessConfigFactory {
  static func make(crop: Int) throws -> PreprocessConfig {
    try PreprocessConfig(
      preset: "torchvision", overrides: ["resize": String(crop), "crop": String(crop)])
  }
}
