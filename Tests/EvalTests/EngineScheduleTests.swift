import Foundation
import Model
import TestSupport
import Testing

@testable import Eval

/// `run --engine-schedule`: engines run one after the other or concurrently on lanes, with the
/// same records either way.
@Suite(.serialized)
struct EngineScheduleTests {
  /// An engine that records which thread ran it and can fail on a chosen batch.
  final class ProbeEngine: InferenceEngine {
    let name: String
    let inputShape: [Int]
    let classCount = 3
    var versionInfo: [String: String] { [:] }
    var threads: [pthread_t] = []
    var calls = 0
    let failOnCall: Int?

    init(name: String, batch: Int = 2, failOnCall: Int? = nil) {
      self.name = name
      inputShape = [batch, 1]
      self.failOnCall = failOnCall
    }

    func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>) throws {
      threads.append(pthread_self())
      calls += 1
      if calls == failOnCall { throw ModelError(.invalidGraph, "\(name) fails on call \(calls)") }
      // Slow enough that concurrent lanes overlap.
      usleep(2000)
      for i in output.indices { output[i] = input[i / classCount] + Float(i % classCount) }
    }
  }

  @Test("lanes: one per distinct engine, int8-rgb shares int8's; threads split between them")
  func lanesAndThreads() throws {
    let float = ProbeEngine(name: "float")
    let int8 = ProbeEngine(name: "int8")
    let second = SecondInputEngine(name: "int8-rgb", wrapping: int8)
    #expect(EngineLanes.lanes(of: [float, int8, second]) == [[0], [1, 2]])
    #expect(EngineLanes.lanes(of: [second, int8]) == [[0, 1]])
    #expect(EngineLanes(engines: [float, int8], concurrent: false).lanes == [[0, 1]])
    let lanes = [[0], [1]]
    #expect(
      EngineLanes.threads(engineCount: 2, lanes: lanes, total: 2, concurrent: true) == [1, 1])
    #expect(
      EngineLanes.threads(engineCount: 2, lanes: lanes, total: 5, concurrent: true) == [3, 2])
    #expect(
      EngineLanes.threads(engineCount: 2, lanes: lanes, total: 1, concurrent: true) == [1, 1])
    #expect(
      EngineLanes.threads(engineCount: 2, lanes: lanes, total: 4, concurrent: false) == [4, 4])
    #expect(
      EngineLanes.threads(engineCount: 2, lanes: lanes, total: nil, concurrent: false) == [
        nil, nil,
      ])
  }

  @Test("concurrent lanes run every engine once per batch, each always on the same thread")
  func concurrentLanesRunEveryEngine() throws {
    let engines = [ProbeEngine(name: "a"), ProbeEngine(name: "b"), ProbeEngine(name: "c")]
    let lanes = EngineLanes(engines: engines, concurrent: true)
    #expect(lanes.lanes == [[0], [1], [2]])
    let input: [Float] = [10, 20]
    let outputs = engines.map { _ in [Float](repeating: 0, count: 6) }
    let buffers = outputs.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.count) }
    defer { for buffer in buffers { buffer.deallocate() } }
    for _ in 0..<5 {
      try input.withUnsafeBufferPointer { x in
        try lanes.run { e in try engines[e].run(input: x, output: buffers[e]) }
      }
    }
    for (e, engine) in engines.enumerated() {
      #expect(engine.calls == 5)
      #expect(Set(engine.threads.map { UInt(bitPattern: Int(bitPattern: $0)) }).count == 1)
      #expect(Array(buffers[e]) == [10, 11, 12, 20, 21, 22])
    }
    // Three lanes, three distinct threads (the first is the caller's).
    #expect(Set(engines.map { UInt(bitPattern: Int(bitPattern: $0.threads[0])) }).count == 3)
    #expect(pthread_equal(engines[0].threads[0], pthread_self()) != 0)
  }

  @Test("a failing engine's error comes back; with two failures, the first engine's")
  func errorsPropagateInEngineOrder() throws {
    let engines = [
      ProbeEngine(name: "a"), ProbeEngine(name: "b", failOnCall: 2),
      ProbeEngine(name: "c", failOnCall: 2),
    ]
    let lanes = EngineLanes(engines: engines, concurrent: true)
    let input: [Float] = [1, 2]
    let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 6 * 3)
    defer { buffer.deallocate() }
    func runOnce() throws {
      try input.withUnsafeBufferPointer { x in
        try lanes.run { e in
          try engines[e].run(
            input: x, output: UnsafeMutableBufferPointer(rebasing: buffer[(e * 6)..<(e * 6 + 6)]))
        }
      }
    }
    try runOnce()
    do {
      try runOnce()
      Issue.record("the failures were lost")
    } catch let error as ModelError {
      #expect(error.message.contains("b fails on call 2"))
    }
    // The lanes stay usable after a failure.
    try runOnce()
    #expect(engines.map(\.calls) == [3, 3, 3])
  }

  @Test("auto trial: alternates from sequential, ignores warm-ups, picks the lower median")
  func trialPicksTheFasterArrangement() {
    var trial = ScheduleTrial()
    var order: [EngineSchedule] = []
    var decision: ScheduleDecision?
    // Warm-ups (batches 0 and 1) would reverse the choice if they counted; the concurrent
    // batches take 3 s for 4 images, the sequential ones 2 s for 2 images, except one outlier.
    let steps: [(Double, Int)] = [
      (0.1, 4), (90, 4), (2, 2), (3, 4), (50, 2), (3, 4), (2, 2), (3, 4),
    ]
    for (seconds, images) in steps {
      order.append(trial.nextArrangement ?? .auto)
      #expect(decision == nil)
      decision = trial.record(seconds: seconds, images: images)
    }
    #expect(
      order == [
        .sequential, .concurrent, .sequential, .concurrent, .sequential, .concurrent,
        .sequential, .concurrent,
      ])
    #expect(ScheduleTrial.batchCount == steps.count)
    #expect(trial.nextArrangement == nil)
    #expect(trial.sequential == [1, 25, 1] && trial.concurrent == [0.75, 0.75, 0.75])
    let made = try? #require(decision)
    #expect(made?.chosen == .concurrent)
    #expect(made?.sequentialSecondsPerImage == 1 && made?.concurrentSecondsPerImage == 0.75)
    #expect(made?.complete == true && made?.measuredBatches == [3, 3])
    #expect(made?.logLine.contains("auto: concurrent (sequential 1000.00 ms/image") == true)
    #expect(
      made?.reason
        == "the faster median whole batch step over 3 sequential and 3 concurrent batches "
        + "(after a warm-up batch each), kept for the rest")
    // Once decided, later batches are not part of the trial.
    #expect(trial.record(seconds: 1, images: 1) == nil && trial.batchesRun == 8)

    // Sequential faster; and a tie goes to sequential.
    for (concurrentSeconds, expected) in [(5.0, EngineSchedule.sequential), (1, .sequential)] {
      var other = ScheduleTrial()
      var last: ScheduleDecision?
      for batch in 0..<ScheduleTrial.batchCount {
        last = other.record(seconds: batch % 2 == 0 ? 1 : concurrentSeconds, images: 1)
      }
      #expect(last?.chosen == expected)
    }
  }

  @Test("auto trial cut short: sequential, marked incomplete, with what was measured")
  func trialTooFewBatches() {
    var trial = ScheduleTrial()
    #expect(trial.decision().chosen == .sequential)
    #expect(trial.decision().sequentialSecondsPerImage == nil)
    for seconds in [1.0, 1, 4] { #expect(trial.record(seconds: seconds, images: 2) == nil) }
    let decision = trial.decision()
    #expect(decision.chosen == .sequential && !decision.complete)
    #expect(decision.measuredBatches == [1, 0] && decision.sequentialSecondsPerImage == 2)
    #expect(decision.concurrentSecondsPerImage == nil)
    #expect(
      decision.logLine
        == "engine schedule auto: sequential; the run ended within the trial's 8 batches "
        + "(sequential 2000.00 ms/image (0.5 images/s), concurrent not measured; "
        + "kept sequential unless both were measured)")
    #expect(
      decision.reason
        == "the run ended during the trial (1 sequential and 0 concurrent batches measured); "
        + "sequential by the trial's rule")
    // Cut short with both measured: the same rule on what there is.
    _ = trial.record(seconds: 0.5, images: 2)
    let both = trial.decision()
    #expect(both.chosen == .concurrent && !both.complete && both.measuredBatches == [1, 1])
    #expect(ScheduleTrial.median([3, 1, 2]) == 2 && ScheduleTrial.median([4, 1, 2, 3]) == 2.5)
    #expect(ScheduleTrial.median([]) == nil)
  }

  @Test("resume compares no thread, shard or schedule field; every other field still counts")
  func executionFieldsAreNotIdentity() {
    let base = Fixture.manifest()
    var old = base
    // A manifest from before the move: threads and the schedule in the engine versions.
    for key in old.engineVersions.keys {
      old.engineVersions[key]?["schedule"] = "concurrent"
      old.engineVersions[key]?["threads"] = "1"
      old.engineVersions[key]?["onednn.max_threads"] = "1"
      old.engineVersions[key]?["batch_shards"] = "1"
    }
    #expect(old.differences(from: base).isEmpty)
    #expect(base.differences(from: old).isEmpty)
    var other = old
    let engine = other.engineVersions.keys.sorted()[0]
    other.engineVersions[engine]?["isa"] = "sse41"
    #expect(
      other.differences(from: base) == [
        "engine_versions.\(engine).isa: 'sse41' vs 'none'"
      ])
    #expect(RunManifest.identityVersions(old.engineVersions) == base.engineVersions)
  }

  /// Runs the tiny model on `setup` with float and int8 into `out`; the exit status.
  private func runTiny(
    _ setup: RunFixture.Workspace, out: String, _ extra: [String]
  ) -> Int32 {
    ImagenetEval.exitStatus(
      arguments: [
        "run", "--model", setup.model.path, "--data", setup.data.path, "--out", out,
        "--quiet", "--engines", "float,int8", "--batch", "2", "--calib-count", "8",
        "--calib-method", "max", "--threads", "2",
      ] + extra + RunFixture.tinyPreprocess)
  }

  private func artefacts(_ out: String) throws -> (log: Data, summary: Summary) {
    (
      try Data(contentsOf: URL(fileURLWithPath: out + "/predictions.jsonl")),
      try Summary.read(from: URL(fileURLWithPath: out + "/summary.json"))
    )
  }

  @Test(
    "run: sequential, concurrent and auto write byte-identical predictions; auto records its choice",
    .requiresPython)
  func schedulesGiveIdenticalRecords() throws {
    // 20 images in batches of 2: 10 batches, enough for the 8-batch trial.
    let setup = try RunFixture.Workspace.make("schedule", count: 20, broken: [5])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    var results: [String: (log: Data, summary: Summary)] = [:]
    for schedule in ["sequential", "concurrent", "auto"] {
      let out = setup.path(schedule)
      #expect(runTiny(setup, out: out, ["--engine-schedule", schedule]) == 0)
      results[schedule] = try artefacts(out)
      #expect(results[schedule]?.summary.metrics.images == 19)
    }
    let sequential = try #require(results["sequential"])
    let concurrent = try #require(results["concurrent"])
    let auto = try #require(results["auto"])
    #expect(!sequential.log.isEmpty && sequential.log == concurrent.log)
    #expect(auto.log == sequential.log, "auto recorded a batch twice or changed a logit")
    #expect(auto.summary.metrics == sequential.summary.metrics)
    // The identity is the same whatever the schedule.
    #expect(auto.summary.provenance.run == sequential.summary.provenance.run)
    #expect(concurrent.summary.provenance.run == sequential.summary.provenance.run)
    #expect(sequential.summary.provenance.run.engineVersions["int8"]?["threads"] == nil)

    let fixed = try #require(concurrent.summary.provenance.execution)
    #expect(fixed.requested == "concurrent" && fixed.chosen == "concurrent")
    #expect(fixed.reason == "fixed by --engine-schedule" && fixed.trialBatches == nil)
    #expect(fixed.engineThreads["concurrent"]?["float"]?["threads"] == "1")
    #expect(
      sequential.summary.provenance.execution?.engineThreads["sequential"]?["float"]?["threads"]
        == "2")

    let chosen = try #require(auto.summary.provenance.execution)
    #expect(chosen.requested == "auto")
    #expect(["sequential", "concurrent"].contains(chosen.chosen))
    #expect(chosen.trialBatches == ScheduleTrial.batchCount)
    #expect((chosen.sequentialSecondsPerImage ?? 0) > 0)
    #expect((chosen.concurrentSecondsPerImage ?? 0) > 0)
    let choseConcurrent =
      (chosen.concurrentSecondsPerImage ?? 0) < (chosen.sequentialSecondsPerImage ?? 0)
    #expect(chosen.chosen == (choseConcurrent ? "concurrent" : "sequential"))
    #expect(chosen.engineThreads["sequential"]?["int8"]?["threads"] == "2")
    #expect(chosen.engineThreads["concurrent"]?["int8"]?["threads"] == "1")
    let report = try String(contentsOfFile: setup.path("auto") + "/report.md", encoding: .utf8)
    #expect(report.contains("- engine schedule: \(chosen.chosen) (--engine-schedule auto"))

    // A run shorter than the trial: every batch recorded once, the trial marked unfinished.
    let short = setup.path("short")
    #expect(runTiny(setup, out: short, ["--limit", "5"]) == 0)
    let shortRun = try artefacts(short)
    let prefix = sequential.log.split(separator: 0x0A).prefix(5)
    #expect(shortRun.log.split(separator: 0x0A) == Array(prefix))
    let cut = try #require(shortRun.summary.provenance.execution)
    #expect(cut.requested == "auto" && cut.chosen == "sequential" && cut.trialBatches == nil)
    #expect(cut.reason.contains("the run ended during the trial"))

    // One engine: sequential without a trial.
    let single = setup.path("single")
    #expect(
      ImagenetEval.exitStatus(
        arguments: [
          "run", "--model", setup.model.path, "--data", setup.data.path, "--out", single,
          "--quiet", "--batch", "2", "--threads", "2",
        ] + RunFixture.tinyPreprocess) == 0)
    let one = try #require(try artefacts(single).summary.provenance.execution)
    #expect(one.chosen == "sequential" && one.reason.contains("one engine lane"))
    #expect(one.sequentialSecondsPerImage == nil)
  }

  @Test(
    "resume: a run started concurrent (with an older manifest) continues under auto, identical to one uninterrupted run",
    .requiresPython)
  func resumeUnderAnotherSchedule() throws {
    let setup = try RunFixture.Workspace.make("schedule-resume", count: 26, broken: [7])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let out = setup.path("resumed")
    #expect(runTiny(setup, out: out, ["--engine-schedule", "concurrent", "--limit", "6"]) == 0)
    // What a session-3/4 tool wrote: threads and the schedule inside the engine versions.
    let manifestURL = URL(fileURLWithPath: out + "/run.json")
    var old = try RunManifest.read(from: manifestURL)
    for key in old.engineVersions.keys {
      old.engineVersions[key]?["schedule"] = "concurrent"
      old.engineVersions[key]?["threads"] = "1"
    }
    try old.write(to: manifestURL)
    // A different calibration is still another run.
    #expect(
      runTiny(setup, out: out, ["--resume", "--calib-count", "6"]) == 4)
    // 20 images left in batches of 2: the trial completes in this session.
    #expect(runTiny(setup, out: out, ["--resume", "--engine-schedule", "auto"]) == 0)
    let resumed = try artefacts(out)
    #expect(resumed.summary.provenance.execution?.trialBatches == ScheduleTrial.batchCount)
    let full = setup.path("full")
    #expect(runTiny(setup, out: full, ["--engine-schedule", "sequential"]) == 0)
    let uninterrupted = try artefacts(full)
    #expect(!resumed.log.isEmpty && resumed.log == uninterrupted.log)
    #expect(resumed.summary.metrics == uninterrupted.summary.metrics)
    #expect(resumed.summary.metrics.samples == 26)
  }

  @Test(
    "run on 96 real images: EfficientNet-Lite0 float+int8 records identical under all schedules",
    .requiresPython,
    .requiresShared,
    .enabled(if: RunFixture.efficientNetLite0 != nil, RunFixture.efficientNetMissingMessage))
  func realDataSchedulesAgree() throws {
    let model = try #require(RunFixture.efficientNetLite0)
    let root = try TestEnvironment.makeTemporaryDirectory("schedule-real")
    defer { try? FileManager.default.removeItem(at: root) }
    var logs: [Data] = []
    // Batches of 8: 12 batches, so auto finishes its trial and runs the rest on its choice.
    for schedule in ["sequential", "concurrent", "auto"] {
      let out = root.appendingPathComponent(schedule).path
      let status = ImagenetEval.exitStatus(
        arguments: [
          "run", "--model", model.path, "--data", TestEnvironment.shared(RunFixture.subset).path,
          "--labels", TestEnvironment.shared("labels/caffe_val.txt").path,
          "--preset", "efficientnet-lite", "--limit", "96", "--engines", "float,int8",
          "--calib-count", "32", "--calib-method", "max", "--threads", "2", "--batch", "8",
          "--engine-schedule", schedule, "--out", out, "--quiet",
        ])
      #expect(status == 0)
      logs.append(try Data(contentsOf: URL(fileURLWithPath: out + "/predictions.jsonl")))
      if schedule == "auto" {
        let summary = try Summary.read(from: URL(fileURLWithPath: out + "/summary.json"))
        #expect(summary.provenance.execution?.trialBatches == ScheduleTrial.batchCount)
        #expect(summary.metrics.images == 96)
      }
    }
    #expect(!logs[0].isEmpty)
    #expect(logs[0] == logs[1], "the schedule changed a logit")
    #expect(logs[0] == logs[2], "auto changed a logit or recorded a batch twice")
  }
}
