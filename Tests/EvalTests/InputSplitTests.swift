import Dataset
import Foundation
import Model
import TestSupport
import Testing

@testable import Eval

/// The int8 engine on its own input path (NV12) beside float on RGB, from one decode: the
/// `int8-rgb` engine, the drop split, the phase timings, and the progress total.
struct InputSplitTests {
  @Test("the drop split is the difference of the three top-1 values and adds up")
  func splitAddsUp() throws {
    // 10 images of class 1: float right on all, int8-rgb on 8, int8 on 7.
    let records = (0..<10).map { i in
      ImageRecord(
        index: i, key: "k\(i)", label: 1,
        engines: [
          "float": EnginePrediction(top5: [1, 2], scores: [0.9, 0.1]),
          "int8": EnginePrediction(top5: i < 7 ? [1, 2] : [2, 1], scores: [0.9, 0.1]),
          "int8-rgb": EnginePrediction(top5: i < 8 ? [1, 2] : [2, 1], scores: [0.9, 0.1]),
        ])
    }
    let metrics = try Metrics.compute(
      records: records, engineNames: ["float", "int8", "int8-rgb"])
    let split = try #require(metrics.dropSplit)
    #expect(
      split.reference == "float" && split.sameInput == "int8-rgb" && split.candidate == "int8")
    #expect(split.quantization == 20)
    #expect(split.inputPath == 10)
    #expect(split.total == 30)
    #expect(split.total == metrics.paired?.top1Drop)
    // Without the same-input engine there is no split.
    #expect(try Metrics.compute(records: records, engineNames: ["float", "int8"]).dropSplit == nil)
  }

  @Test("progress total: directory pre-count, shard and limit; tars of unknown content say so")
  func progressTotal() throws {
    let root = try TestEnvironment.makeTemporaryDirectory("progress-total")
    defer { try? FileManager.default.removeItem(at: root) }
    let folder = root.appendingPathComponent("n01440764")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    for i in 0..<7 {
      try Data([0xFF, 0xD8]).write(to: folder.appendingPathComponent("img\(i).JPEG"))
    }
    try Data("x".utf8).write(to: folder.appendingPathComponent("notes.txt"))
    let tar = root.appendingPathComponent("val.tar")
    try Data(count: 1024).write(to: tar)
    #expect(
      ProgressTotal.samples(paths: [root.path], shard: .whole, filtered: false, limit: nil) == 7)
    #expect(
      ProgressTotal.samples(
        paths: [root.path], shard: try Shard(index: 2, count: 3), filtered: false, limit: nil) == 2)
    #expect(
      ProgressTotal.samples(paths: [root.path], shard: .whole, filtered: false, limit: 5) == 5)
    #expect(
      ProgressTotal.samples(paths: [root.path], shard: .whole, filtered: true, limit: nil) == nil)
    #expect(
      ProgressTotal.samples(paths: [tar.path], shard: .whole, filtered: false, limit: nil) == nil)
    #expect(
      ProgressTotal.samples(
        paths: [root.path, tar.path], shard: .whole, filtered: false, limit: nil)
        == nil)
    // A file named like the official tarball but of another size is not trusted.
    let fake = root.appendingPathComponent("ILSVRC2012_img_val.tar")
    try Data(count: 10).write(to: fake)
    #expect(ProgressTotal.imageCount(fake.path) == nil)

    let unknown = ProgressReporter(
      engineNames: ["float"], total: nil, enabled: false, fraction: { 0.25 })
    unknown.add([], processed: 10)
    let line = unknown.line()
    #expect(line.contains("0 images (total unknown)"))
    #expect(line.contains("ETA") && line.contains("25% of bytes read"))
  }
}

/// `run --int8-color nv12` end to end on the tiny model.
@Suite(
  .requiresPython)
struct InputSplitRunTests {
  func run(model: URL, data: URL, out: String, _ extra: [String]) -> Int32 {
    ImagenetEval.exitStatus(
      arguments: [
        "run", "--model", model.path, "--data", data.path, "--out", out, "--quiet", "--batch", "4",
      ] + RunFixture.tinyPreprocess + extra)
  }

  func records(_ out: String) throws -> [ImageRecord] {
    try ResultLog.readLog(
      at: URL(fileURLWithPath: out + "/predictions.jsonl"), shard: .whole, allowTornTail: false
    ).records
  }

  @Test("int8 on NV12 and int8-rgb on the float tensor from one decode; the split adds up")
  func nv12Split() throws {
    let root = try TestEnvironment.makeTemporaryDirectory("input-split")
    defer { try? FileManager.default.removeItem(at: root) }
    let model = root.appendingPathComponent("tiny.onnx")
    try RunFixture.tinyModel(at: model)
    let data = root.appendingPathComponent("data.tar")
    try RunFixture.webDataset(at: data, count: 10, broken: [3])
    let int8 = ["--engines", "float,int8", "--calib-method", "max", "--calib-count", "8"]
    let split = root.appendingPathComponent("split").path
    #expect(run(model: model, data: data, out: split, int8 + ["--int8-color", "nv12"]) == 0)
    // The same int8 engine when every engine reads NV12, and float alone on RGB.
    let allNV12 = root.appendingPathComponent("nv12").path
    #expect(
      run(model: model, data: data, out: allNV12, int8 + ["--color", "nv12-full"]) == 0)
    let floatOnly = root.appendingPathComponent("float").path
    #expect(run(model: model, data: data, out: floatOnly, []) == 0)

    let summary = try Summary.read(from: URL(fileURLWithPath: split + "/summary.json"))
    #expect(summary.provenance.run.engines == ["float", "int8", "int8-rgb"])
    #expect(summary.metrics.paired?.candidate == "int8")
    let dropSplit = try #require(summary.metrics.dropSplit)
    let total = try #require(dropSplit.total)
    let parts = try #require(dropSplit.quantization).advanced(by: try #require(dropSplit.inputPath))
    #expect(abs(total - parts) < 1e-9)
    #expect(total == summary.metrics.paired?.top1Drop)
    #expect(summary.provenance.run.calibration?["input_path"] == "chroma none -> nv12-full")
    #expect(summary.provenance.run.engineVersions["int8-rgb"]?["input"] != nil)

    // Each engine got the tensor of its own input path.
    let splitRecords = try records(split)
    let nv12Records = try records(allNV12)
    let floatRecords = try records(floatOnly)
    #expect(splitRecords.count == 10)
    for (a, (b, c)) in zip(splitRecords, zip(nv12Records, floatRecords)) where a.skip == nil {
      #expect(a.engines?["int8"] == b.engines?["int8"], "\(a.key)")
      #expect(a.engines?["float"] == c.engines?["float"], "\(a.key)")
    }

    // One decode per image for both tensors; timings split, images/s over evaluation only.
    let timings = try #require(summary.provenance.timings)
    #expect(timings.decodedImages == 9)
    #expect(timings.evaluatedSamples == 10)
    #expect(timings.calibration > 0 && timings.engineBuild > 0 && timings.evaluation > 0)
    #expect(timings.total >= timings.modelLoad + timings.calibration + timings.engineBuild)
    let rate = try #require(summary.provenance.imagesPerSecond)
    #expect(abs(rate - 10 / timings.evaluation) < 1e-6 * rate)
    let report = try String(contentsOfFile: split + "/report.md", encoding: .utf8)
    #expect(report.contains("Where the float → int8 drop comes from"))
    #expect(report.contains("calibration"))
  }

  @Test("mapper YAML warnings reach summary.json and report.md; --int16 and --float are recorded")
  func mapperConfigRun() throws {
    let root = try TestEnvironment.makeTemporaryDirectory("mapper-run")
    defer { try? FileManager.default.removeItem(at: root) }
    let model = root.appendingPathComponent("named.onnx")
    try Int8SetupTests.namedModel(at: model)
    let data = root.appendingPathComponent("data.tar")
    try RunFixture.webDataset(at: data, count: 8)
    let config = root.appendingPathComponent("config.yaml")
    try """
    model_parameters:
      march: "bayes-e"
    input_parameters:
      input_type_rt: 'nv12'
      input_type_train: 'rgb'
      norm_type: 'data_mean_and_scale'
      mean_value: 123.675 116.28 103.53
      scale_value: 0.0171 0.0175 0.0174
    calibration_parameters:
      calibration_type: 'max'
      run_on_cpu: 'fc'
    """.write(to: config, atomically: true, encoding: .utf8)
    let out = root.appendingPathComponent("out").path
    let status = run(
      model: model, data: data, out: out,
      ["--engines", "float,int8", "--calib-count", "8", "--mapper-config", config.path])
    #expect(status == 0)
    let summary = try Summary.read(from: URL(fileURLWithPath: out + "/summary.json"))
    let warnings = summary.provenance.warnings ?? []
    #expect(warnings.contains { $0.contains("model_parameters.march") })
    let calibration = try #require(summary.provenance.run.calibration)
    #expect(calibration["method"] == "max")
    #expect(calibration["float_nodes"] == "fc")
    #expect(calibration["mapper_config_sha256"]?.count == 64)
    #expect(calibration["input_path"]?.contains("nv12-full") == true)
    #expect(summary.provenance.run.engines == ["float", "int8", "int8-rgb"])
    let report = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
    #expect(report.contains("## Warnings") && report.contains("model_parameters.march"))

    // --int16 reaches the engine: recorded when int16 is implemented, else refused by name.
    let int16Out = root.appendingPathComponent("int16").path
    let int16Status = run(
      model: model, data: data, out: int16Out,
      ["--engines", "float,int8", "--calib-count", "8", "--int16", "conv2"])
    if int16Status == 0 {
      let int16Summary = try Summary.read(from: URL(fileURLWithPath: int16Out + "/summary.json"))
      #expect(int16Summary.provenance.run.calibration?["int16_nodes"] == "conv2")
    } else {
      #expect(int16Status == 1)
    }
    // Options of the int8 engine without one are usage errors.
    #expect(run(model: model, data: data, out: int16Out, ["--int16", "conv2"]) == 1)
    #expect(run(model: model, data: data, out: int16Out, ["--mapper-config", config.path]) == 1)
  }
}
