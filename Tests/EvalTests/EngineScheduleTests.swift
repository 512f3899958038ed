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

  @Test(
    "run: sequential and concurrent schedules write byte-identical predictions",
    .requiresPython)
  func schedulesGiveIdenticalRecords() throws {
    let setup = try RunFixture.Workspace.make("schedule", count: 14, broken: [5])
    defer { try? FileManager.default.removeItem(at: setup.root) }
    var logs: [Data] = []
    var versions: [[String: [String: String]]] = []
    for schedule in ["sequential", "concurrent"] {
      let out = setup.path(schedule)
      let status = ImagenetEval.exitStatus(
        arguments: [
          "run", "--model", setup.model.path, "--data", setup.data.path, "--out", out,
          "--quiet", "--engines", "float,int8", "--batch", "4", "--calib-count", "8",
          "--calib-method", "max", "--threads", "2", "--engine-schedule", schedule,
        ] + RunFixture.tinyPreprocess)
      #expect(status == 0)
      logs.append(try Data(contentsOf: URL(fileURLWithPath: out + "/predictions.jsonl")))
      let summary = try Summary.read(from: URL(fileURLWithPath: out + "/summary.json"))
      #expect(summary.metrics.images == 13)
      versions.append(summary.provenance.run.engineVersions)
    }
    #expect(!logs[0].isEmpty && logs[0] == logs[1])
    #expect(versions[0]["int8"]?["schedule"] == "sequential")
    #expect(versions[1]["int8"]?["schedule"] == "concurrent")
    #expect(versions[1]["float"]?["threads"] == "1" && versions[0]["float"]?["threads"] == "2")
  }

  @Test(
    "run on 96 real images: EfficientNet-Lite0 float+int8 records identical under both schedules",
    .requiresPython,
    .enabled(
      if: TestEnvironment.sharedAvailable, Comment(rawValue: TestEnvironment.sharedMissingMessage)),
    .enabled(if: RunFixture.efficientNetLite0 != nil, RunFixture.efficientNetMissingMessage))
  func realDataSchedulesAgree() throws {
    let model = try #require(RunFixture.efficientNetLite0)
    let root = try TestEnvironment.makeTemporaryDirectory("schedule-real")
    defer { try? FileManager.default.removeItem(at: root) }
    var logs: [Data] = []
    for schedule in ["sequential", "concurrent"] {
      let out = root.appendingPathComponent(schedule).path
      let status = ImagenetEval.exitStatus(
        arguments: [
          "run", "--model", model.path, "--data", TestEnvironment.shared(RunFixture.subset).path,
          "--labels", TestEnvironment.shared("labels/caffe_val.txt").path,
          "--preset", "efficientnet-lite", "--limit", "96", "--engines", "float,int8",
          "--calib-count", "32", "--calib-method", "max", "--threads", "2",
          "--engine-schedule", schedule, "--out", out, "--quiet",
        ])
      #expect(status == 0)
      logs.append(try Data(contentsOf: URL(fileURLWithPath: out + "/predictions.jsonl")))
    }
    #expect(!logs[0].isEmpty)
    #expect(logs[0] == logs[1], "the schedule changed a logit")
  }
}
