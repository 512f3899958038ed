import Foundation
import TestSupport
import Testing

@testable import Eval

#if canImport(Glibc)
  import Glibc
#endif

/// `run` on the 1300 real ILSVRC2012 validation images with the real-weights
/// EfficientNet-Lite0: the published onnxruntime figure image by image, and a resume after
/// `kill -9`. Heavy: CI runs these in release mode.
@Suite(
  .serialized,
  .requiresShared,
  .requiresPython,
  .enabled(if: RunFixture.efficientNetLite0 != nil, RunFixture.efficientNetMissingMessage))
struct RunRealDataTests {
  func arguments(out: URL, model: URL, extra: [String] = []) -> [String] {
    [
      "run", "--model", model.path, "--data", TestEnvironment.shared(RunFixture.subset).path,
      "--labels", TestEnvironment.shared("labels/caffe_val.txt").path,
      "--preset", "efficientnet-lite", "--engines", "float", "--out", out.path, "--quiet",
    ] + extra
  }

  @Test func efficientNetLite0MatchesONNXRuntimeImageByImage() throws {
    let model = try #require(RunFixture.efficientNetLite0)
    let root = try TestEnvironment.makeTemporaryDirectory("run-real")
    defer { try? FileManager.default.removeItem(at: root) }
    let out = root.appendingPathComponent("lite0")
    #expect(ImagenetEval.exitStatus(arguments: arguments(out: out, model: model)) == 0)
    let summary = try Summary.read(from: out.appendingPathComponent("summary.json"))
    let float = try #require(summary.metrics.engines["float"])
    #expect(summary.metrics.samples == 1300)
    #expect(summary.metrics.images == 1300)
    // The onnxruntime reference published with the data: 1071/1300 and 1237/1300.
    #expect(float.top1Correct == 1071)
    #expect(float.top5Correct == 1237)
    #expect(abs((float.top1 ?? 0) - 82.38) < 0.005)
    #expect(abs((float.top5 ?? 0) - 95.15) < 0.005)

    let printed = try PythonReference.run(
      script: "scripts/reference/check_efficientnet_lite0.py",
      arguments: [
        "--model", model.path, "--tar", TestEnvironment.shared(RunFixture.subset).path,
        "--predictions",
      ])
    let line = try #require(printed.split(whereSeparator: \.isNewline).last)
    let object = try #require(
      try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    let reference = try #require(object["top1_predictions"] as? [String: Int])
    #expect(reference.count == 1300)
    let log = try ResultLog.readLog(
      at: out.appendingPathComponent("predictions.jsonl"), shard: .whole, allowTornTail: false)
    var disagreements = [String]()
    for record in log.records {
      let name = Self.baseName(record.key)
      let theirs = reference[name] ?? reference[name + ".JPEG"]
      let ours = record.engines?["float"]?.top5.first
      if theirs == nil || theirs != ours {
        disagreements.append(
          "\(record.key): ours \(ours.map(String.init) ?? "none"), onnxruntime \(theirs.map(String.init) ?? "none")"
        )
      }
    }
    #expect(
      disagreements.isEmpty, "\(disagreements.count) images differ: \(disagreements.prefix(10))")
  }

  static func baseName(_ key: String) -> String {
    let last = key.split(separator: "/").last.map(String.init) ?? key
    return last.hasSuffix(".JPEG") ? String(last.dropLast(5)) : last
  }

  @Test func resumeAfterKillNineEqualsAnUninterruptedRun() throws {
    let model = try #require(RunFixture.efficientNetLite0)
    let binary = try #require(
      RunFixture.executable, "the imagenet-eval executable was not built next to the tests")
    let root = try TestEnvironment.makeTemporaryDirectory("run-resume")
    defer { try? FileManager.default.removeItem(at: root) }
    let limit = ["--limit", "400", "--batch", "16"]

    let reference = root.appendingPathComponent("uninterrupted")
    #expect(
      ImagenetEval.exitStatus(arguments: arguments(out: reference, model: model, extra: limit))
        == 0)

    let out = root.appendingPathComponent("killed")
    let records = out.appendingPathComponent("predictions.jsonl")
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments(out: out, model: model, extra: limit)
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    // Kill once some records are on disk but the run is not finished.
    let deadline = Date().addingTimeInterval(120)
    while process.isRunning && Date() < deadline {
      let size =
        (try? FileManager.default.attributesOfItem(atPath: records.path)[.size] as? Int) ?? 0
      if size > 0 { break }
      usleep(2_000)
    }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    #expect(process.terminationReason == .uncaughtSignal, "the run finished before it was killed")
    let partial = try ResultLog.readLog(at: records, shard: .whole, allowTornTail: true)
    #expect(partial.records.count < 400)
    #expect(
      !FileManager.default.fileExists(atPath: out.appendingPathComponent("summary.json").path))

    let resumed = Process()
    resumed.executableURL = binary
    resumed.arguments = arguments(out: out, model: model, extra: limit + ["--resume"])
    resumed.standardOutput = FileHandle.nullDevice
    resumed.standardError = FileHandle.nullDevice
    try resumed.run()
    resumed.waitUntilExit()
    #expect(resumed.terminationStatus == 0)

    let a = try Summary.read(from: reference.appendingPathComponent("summary.json"))
    let b = try Summary.read(from: out.appendingPathComponent("summary.json"))
    #expect(b.metrics.samples == 400)
    #expect(a.metrics == b.metrics)
    let full = try ResultLog.readLog(at: records, shard: .whole, allowTornTail: false)
    #expect(full.records.map(\.index) == Array(0..<400))
  }
}
