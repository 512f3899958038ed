import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Splits the engines' own passes (the int8 engine's quantise, lookup tables, adds and channel
/// slices; the float engine's GELU) across the OpenMP team that runs the oneDNN primitives.
///
/// Between two primitives libgomp's worker threads spin (default wait policy) or sleep
/// (passive); work handed to another pool (Dispatch) would compete with the spinning workers
/// for the same cores, and work done on the calling thread alone leaves them idle. Entering
/// an OpenMP parallel region instead reuses the very threads oneDNN just used. The runtime's
/// entry points are looked up at run time in the libgomp oneDNN already loaded (no link flag);
/// without them every pass runs on the calling thread.
enum KernelTeam {
  typealias Body = OpenMPRuntime.Body

  private static let parallel = OpenMPRuntime.parallel
  private static let threadNumber = OpenMPRuntime.threadNumber
  private static let teamSize = OpenMPRuntime.teamSize
  private static let maxThreads = OpenMPRuntime.maxThreads
  private static let inParallel = OpenMPRuntime.inParallel
  private static let barrier = OpenMPRuntime.barrier

  /// Bytes of work per thread below which a pass stays on the calling thread: waking a
  /// sleeping worker (`OMP_WAIT_POLICY=passive`) costs tens of microseconds, more than a small
  /// pass. With libgomp's default (spinning) policy a smaller threshold may pay at batch 1,
  /// where most passes are 30–250 KB (FasterNet-T0's int8 14×14 GELU table pass is 63 KB and runs
  /// on one thread); on a loaded machine it costs (see bench/README.md, "Batch-1 latency").
  /// `IMAGENET_EVAL_PASS_BYTES=n` sets it for such A/B measurements (32 KB by default).
  static let minimumBytesPerThread: Int = {
    if let value = ProcessInfo.processInfo.environment["IMAGENET_EVAL_PASS_BYTES"],
      let forced = Int(value), forced > 0
    {
      return forced
    }
    return 32 * 1024
  }()

  /// The team size a parallel region started now would get (`omp_set_num_threads` applies);
  /// 1 inside a parallel region (a batch shard's thread, see `BatchShards`), where libgomp
  /// would run a nested region on one thread anyway.
  static var availableThreads: Int {
    guard parallel != nil, threadNumber != nil, teamSize != nil, let maxThreads else { return 1 }
    if let inParallel, inParallel() != 0 { return 1 }
    return max(1, Int(maxThreads()))
  }

  /// How many threads a pass over `bytes` bytes should use.
  static func threads(forBytes bytes: Int) -> Int {
    min(availableThreads, max(1, bytes / minimumBytesPerThread))
  }

  /// Calls `body(range)` for disjoint ranges covering `0..<count`, on up to `threads`
  /// threads (each range a contiguous block; the calling thread takes part).
  static func forEachRange(
    _ count: Int, threads: Int, _ body: (Range<Int>) -> Void
  ) {
    guard count > 0 else { return }
    let team = min(threads, count)
    guard team > 1, let parallel else {
      body(0..<count)
      return
    }
    withoutActuallyEscaping(body) { body in
      enter(Context(count: count, body: body, afterBarrier: nil), team: team, parallel)
    }
  }

  /// `forEachRange` in two phases over the same ranges: every thread runs `first` on its
  /// range, waits for the whole team, then runs `second` on it — for passes whose second phase
  /// reads what other threads wrote in the first. One parallel region, not two.
  static func forEachRange(
    _ count: Int, threads: Int, _ first: (Range<Int>) -> Void,
    thenAfterBarrier second: (Range<Int>) -> Void
  ) {
    guard count > 0 else { return }
    let team = min(threads, count)
    guard team > 1, let parallel, barrier != nil else {
      first(0..<count)
      second(0..<count)
      return
    }
    withoutActuallyEscaping(first) { first in
      withoutActuallyEscaping(second) { second in
        enter(Context(count: count, body: first, afterBarrier: second), team: team, parallel)
      }
    }
  }

  /// Runs `context` on a team of `team` threads; returns when all are done.
  private static func enter(
    _ context: Context, team: Int, _ parallel: OpenMPRuntime.ParallelEntry
  ) {
    var context = context
    withUnsafeMutablePointer(to: &context) { pointer in
      parallel(KernelTeam.run, UnsafeMutableRawPointer(pointer), UInt32(team), 0)
    }
  }

  private struct Context {
    var count: Int
    var body: (Range<Int>) -> Void
    var afterBarrier: ((Range<Int>) -> Void)?
  }

  /// The region body: this thread's share of the blocks.
  private static let run: Body = { raw in
    guard let raw, let threadNumber = KernelTeam.threadNumber,
      let teamSize = KernelTeam.teamSize
    else { return }
    let context = raw.assumingMemoryBound(to: Context.self)
    let count = context.pointee.count
    let team = Int(teamSize())
    let me = Int(threadNumber())
    let start = count * me / team
    let end = count * (me + 1) / team
    if start < end { context.pointee.body(start..<end) }
    if let second = context.pointee.afterBarrier, let waitForTeam = KernelTeam.barrier {
      // Every thread reaches the barrier, even one without a range.
      waitForTeam()
      if start < end { second(start..<end) }
    }
  }
}
