import Foundation
import TestSupport
import Testing

@testable import Eval

@Suite struct ResultLogTests {
  let samples = 300

  @Test func resumeAfterATornLastLineEqualsAnUninterruptedRun() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let whole = root.appendingPathComponent("whole")
    let reference = try Fixture.completeRun(sampleCount: samples, shard: .whole, directory: whole)

    // Run 7 batches, then "crash": leave half of an extra record on the last line.
    let crashed = root.appendingPathComponent("crashed")
    let manifest = Fixture.manifest()
    do {
      let log = try ResultLog(directory: crashed, manifest: manifest, resume: false)
      try Fixture.run(sampleCount: samples, shard: .whole, log: log, stopAfterBatches: 7)
      #expect(log.lastIndex == 55)
      log.close()
    }
    let recordsURL = crashed.appendingPathComponent(ResultLog.recordsFileName)
    let wholeLines = try String(
      contentsOf: whole.appendingPathComponent(ResultLog.recordsFileName), encoding: .utf8
    )
    .split(separator: "\n")
    let torn = Data(wholeLines[56].utf8.prefix(40))
    let handle = try FileHandle(forWritingTo: recordsURL)
    try handle.seekToEnd()
    try handle.write(contentsOf: torn)
    try handle.close()

    // Resume: the torn line goes, the run continues after sample 55.
    let log = try ResultLog(directory: crashed, manifest: manifest, resume: true)
    #expect(log.droppedTornBytes == 40)
    #expect(log.records.count == 56)
    #expect(log.lastIndex == 55)
    try Fixture.run(sampleCount: samples, shard: .whole, log: log)
    try log.finish(datasetSampleCount: samples, wallSeconds: 1.5)
    let resumed = try RunOutput.write(
      records: log.records, manifest: manifest, directory: crashed,
      commandLine: ["imagenet-eval", "run"], wallSeconds: 1.5, classNames: Fixture.classNames)

    #expect(resumed.metrics == reference.metrics)
    #expect(resumed.metrics.samples == samples)
    #expect(resumed.metrics.skipped.total == 4)  // samples 5, 102, 199, 296
    #expect(
      try Data(contentsOf: recordsURL)
        == Data(contentsOf: whole.appendingPathComponent(ResultLog.recordsFileName)))
    #expect(
      try Fixture.metricsBytes(crashed.appendingPathComponent(Summary.fileName))
        == Fixture.metricsBytes(whole.appendingPathComponent(Summary.fileName)))
    // Reading the finished log back gives the same records.
    let reread = try ResultLog.readLog(at: recordsURL, shard: .whole, allowTornTail: false)
    #expect(reread.records == log.records)
  }

  @Test func resumeRefusesADifferentRunNamingTheField() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let log = try ResultLog(directory: directory, manifest: Fixture.manifest(), resume: false)
    try Fixture.run(sampleCount: 40, shard: .whole, log: log, stopAfterBatches: 2)
    log.close()

    var other = Fixture.manifest()
    other.preprocessing["crop_pct"] = "0.95"
    other.model.sha256 = String(repeating: "cd", count: 32)
    let error = try #require(throws: EvalError.self) {
      try ResultLog(directory: directory, manifest: other, resume: true)
    }
    #expect(error.kind == .inconsistentRun)
    #expect(error.exitCode.rawValue == 4)
    #expect(error.message.contains("preprocessing.crop_pct: '0.875' vs '0.95'"))
    #expect(error.message.contains("model.sha256"))

    // A moved model file is the same run.
    var moved = Fixture.manifest()
    moved.model.path = "/elsewhere/fake.onnx"
    let resumed = try ResultLog(directory: directory, manifest: moved, resume: true)
    #expect(resumed.records.count == 16)
  }

  @Test func startingOverAnExistingRunIsRefused() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    _ = try ResultLog(directory: directory, manifest: Fixture.manifest(), resume: false)
    let error = try #require(throws: EvalError.self) {
      try ResultLog(directory: directory, manifest: Fixture.manifest(), resume: false)
    }
    #expect(error.kind == .inconsistentRun)
    #expect(error.message.contains("--resume"))
  }

  @Test func resumingIntoAnEmptyDirectoryStartsTheRun() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let log = try ResultLog(directory: directory, manifest: Fixture.manifest(), resume: true)
    #expect(log.records.isEmpty)
    #expect(
      FileManager.default.fileExists(
        atPath: directory.appendingPathComponent(ResultLog.manifestFileName).path))
  }

  @Test func appendingTwiceOrOutsideTheShardIsRefused() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let shard = try Shard(index: 1, count: 3)
    let log = try ResultLog(
      directory: directory, manifest: Fixture.manifest(shard: shard), resume: false)
    let record = ImageRecord.skipped(index: 4, key: "k4", label: 0, reason: "decode", detail: "x")
    try log.append([record])
    #expect(throws: EvalError.self) { try log.append([record]) }
    let foreign = ImageRecord.skipped(index: 9, key: "k9", label: 0, reason: "decode", detail: "x")
    #expect(throws: EvalError.self) { try log.append([foreign]) }
    #expect(log.records.count == 1)
  }

  @Test func aCorruptCompleteLineIsAnErrorWithTheLineNumber() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let log = try ResultLog(directory: directory, manifest: Fixture.manifest(), resume: false)
    try Fixture.run(sampleCount: 40, shard: .whole, log: log, stopAfterBatches: 1)
    log.close()
    let url = directory.appendingPathComponent(ResultLog.recordsFileName)
    var text = try String(contentsOf: url, encoding: .utf8)
    text += "{not json}\n"
    try text.write(to: url, atomically: true, encoding: .utf8)
    let error = try #require(throws: EvalError.self) {
      try ResultLog(directory: directory, manifest: Fixture.manifest(), resume: true)
    }
    #expect(error.message.contains("\(ResultLog.recordsFileName):9: malformed record"))
  }
}
