import ArgumentParser
import Foundation
import Model

/// How `run` schedules its engines on each batch.
enum EngineSchedule: String, CaseIterable, ExpressibleByArgument {
  /// Both arrangements timed on the first batches of the run, the faster one kept
  /// (`ScheduleTrial`); sequential when only one engine (lane) runs.
  case auto
  /// One engine after the other on the calling thread, each with every oneDNN/OpenMP thread.
  case sequential
  /// Each engine on its own thread at the same time, the threads split between them: no
  /// OpenMP team waits for another, and the lighter engine's idle share goes to decoding.
  case concurrent
}

/// Runs a batch through every engine, in `engines` order or concurrently by lane.
///
/// Engines that share kernels and buffers (an engine and its `SecondInputEngine`) are one
/// lane and always run one after the other. Each lane other than the first has a dedicated
/// thread, so an engine always runs on the same thread (OpenMP keeps its thread count per
/// calling thread, and `DNNLEngine` prepares the team of a new calling thread once). Every
/// engine writes its own output buffer and results are read after all lanes finished, so
/// the logits do not depend on the schedule.
final class EngineLanes {
  /// Engine indices of each lane, in engine order; lane 0 runs on the calling thread.
  let lanes: [[Int]]
  private let workers: [LaneWorker]

  /// Groups `engines` into lanes (one per distinct underlying engine) when `concurrent`,
  /// or one lane holding them all.
  init(engines: [any InferenceEngine], concurrent: Bool) {
    lanes = concurrent ? Self.lanes(of: engines) : [Array(engines.indices)]
    workers = lanes.dropFirst().enumerated().map {
      LaneWorker(name: "engine lane \($0.offset + 1)")
    }
  }

  deinit {
    for worker in workers { worker.stop() }
  }

  /// Lanes of `engines`: engines wrapping the same object share a lane.
  static func lanes(of engines: [any InferenceEngine]) -> [[Int]] {
    func underlying(_ engine: any InferenceEngine) -> ObjectIdentifier {
      if let second = engine as? SecondInputEngine { return ObjectIdentifier(second.wrapped) }
      return ObjectIdentifier(engine)
    }
    var order: [ObjectIdentifier] = []
    var members: [ObjectIdentifier: [Int]] = [:]
    for (index, engine) in engines.enumerated() {
      let key = underlying(engine)
      if members[key] == nil { order.append(key) }
      members[key, default: []].append(index)
    }
    return order.compactMap { members[$0] }
  }

  /// The thread count of each engine when `threads` (nil: one per core) are split between
  /// the lanes of `engines`: an equal share each, the remainder to the first lanes, at
  /// least 1. Sequential scheduling gives every engine `threads`.
  static func threads(
    engineCount: Int, lanes: [[Int]], total threads: Int?, concurrent: Bool
  ) -> [Int?] {
    guard concurrent, lanes.count > 1 else { return Array(repeating: threads, count: engineCount) }
    let total = threads ?? ProcessInfo.processInfo.activeProcessorCount
    var result = [Int?](repeating: nil, count: engineCount)
    for (lane, indices) in lanes.enumerated() {
      let share = max(1, total / lanes.count + (lane < total % lanes.count ? 1 : 0))
      for index in indices { result[index] = share }
    }
    return result
  }

  /// Runs `body(engineIndex)` for every engine, lanes concurrently, engines of a lane in
  /// order. Rethrows the error of the first engine (in engine order) that failed.
  func run(_ body: @escaping (Int) throws -> Void) throws {
    var errors = [Int: any Error]()
    let lock = NSLock()
    func runLane(_ lane: [Int]) {
      for index in lane {
        do {
          try body(index)
        } catch {
          lock.lock()
          errors[index] = error
          lock.unlock()
          return
        }
      }
    }
    for (worker, lane) in zip(workers, lanes.dropFirst()) {
      worker.submit { runLane(lane) }
    }
    runLane(lanes[0])
    for worker in workers { worker.wait() }
    if let first = errors.keys.min(), let error = errors[first] { throw error }
  }
}

/// One set of engines built for one arrangement (their thread counts fixed at build time),
/// with the lanes that run them.
final class EngineArrangement {
  /// `sequential` or `concurrent`.
  let schedule: EngineSchedule
  /// The engines in `run`'s engine order.
  let engines: [any InferenceEngine]
  /// Runs `engines` as `schedule` says.
  let lanes: EngineLanes

  init(schedule: EngineSchedule, engines: [any InferenceEngine]) {
    self.schedule = schedule
    self.engines = engines
    lanes = EngineLanes(engines: engines, concurrent: schedule == .concurrent)
  }
}

/// A thread that runs submitted jobs one at a time.
private final class LaneWorker: @unchecked Sendable {
  private let condition = NSCondition()
  private var job: (() -> Void)?
  private var busy = false
  private var stopping = false

  init(name: String) {
    let thread = Thread { [self] in loop() }
    thread.name = name
    // oneDNN and OpenMP run their kernels on this thread; give it the main thread's stack.
    thread.stackSize = 8 << 20
    thread.start()
  }

  private func loop() {
    condition.lock()
    while true {
      while job == nil && !stopping { condition.wait() }
      guard let next = job else { break }
      condition.unlock()
      next()
      condition.lock()
      job = nil
      busy = false
      condition.broadcast()
    }
    condition.unlock()
  }

  /// Starts `job` on the thread (the previous one must have been waited for).
  func submit(_ job: @escaping () -> Void) {
    condition.lock()
    self.job = job
    busy = true
    condition.broadcast()
    condition.unlock()
  }

  /// Blocks until the submitted job has finished.
  func wait() {
    condition.lock()
    while busy { condition.wait() }
    condition.unlock()
  }

  /// Ends the thread after its current job.
  func stop() {
    condition.lock()
    stopping = true
    condition.broadcast()
    condition.unlock()
  }
}
