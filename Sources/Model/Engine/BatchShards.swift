#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Runs one batch as independent shards, one per OpenMP thread, instead of splitting every
/// primitive across the threads.
///
/// With 2 threads, a small primitive (a depthwise convolution, a 7×7 late stage, an int8
/// Swift pass) costs as much in its end-of-primitive barrier as in arithmetic, and a batch
/// pays that at every primitive. A shard is a complete plan (primitives, arena) built for its
/// sub-batch with one thread, so its kernels are blocked for one thread and never wait for the
/// other; the shards read and write contiguous slices of the batch-major input and output.
///
/// Inside the parallel region oneDNN 2.6 runs every primitive on the calling thread
/// (`omp_in_parallel()` makes its `parallel` sequential), and `KernelTeam` keeps its passes
/// on the calling thread too. Shard primitives use user-mode scratchpads (see `DNNLEngine`):
/// the library-mode global scratchpad belongs to the thread that created the primitive, so two
/// shards built on one thread and run on two would share it.
///
/// `IMAGENET_EVAL_BATCH_SHARDS=0` turns sharding off (for A/B measurements).
enum BatchShards {
  private static let parallel = OpenMPRuntime.parallel
  private static let threadNumber = OpenMPRuntime.threadNumber
  private static let teamSize = OpenMPRuntime.teamSize
  private static let maxThreads = OpenMPRuntime.maxThreads
  private static let inParallelQuery = OpenMPRuntime.inParallel
  private static let setThreads = OpenMPRuntime.setThreadCount

  /// False when the environment turns sharding off.
  static let enabled: Bool = {
    guard let value = getenv("IMAGENET_EVAL_BATCH_SHARDS") else { return true }
    return String(cString: value) != "0"
  }()

  /// True inside an active OpenMP parallel region (a shard's thread).
  static var inParallel: Bool { (inParallelQuery?() ?? 0) != 0 }

  /// The sub-batch sizes a batch of `batchSize` runs as with `threads` threads (nil: the
  /// OpenMP default), largest last; nil when the batch runs unsharded (sharding off, one
  /// thread, fewer images than threads, or no OpenMP runtime).
  static func sizes(batchSize: Int, threads: Int?) -> [Int]? {
    guard enabled, parallel != nil, threadNumber != nil, teamSize != nil, setThreads != nil,
      let defaultCount = OpenMPRuntime.defaultThreadCount
    else { return nil }
    // Fewer images than threads would leave threads idle: those batches stay unsharded.
    let count = threads ?? defaultCount
    guard count >= 2, batchSize >= count else { return nil }
    return (0..<count).map { batchSize * ($0 + 1) / count - batchSize * $0 / count }
  }

  /// The first image of each shard: the running sums of `sizes`, from 0.
  static func starts(of sizes: [Int]) -> [Int] {
    var starts: [Int] = []
    var next = 0
    for size in sizes {
      starts.append(next)
      next += size
    }
    return starts
  }

  /// Runs `body` with OpenMP's thread count at 1 on the calling thread, then restores it:
  /// oneDNN picks a primitive's blocking for `omp_get_max_threads()` threads at creation.
  static func buildingSingleThreaded<Result>(_ body: () throws -> Result) rethrows -> Result {
    guard let setThreads, let maxThreads else { return try body() }
    let saved = maxThreads()
    setThreads(1)
    defer { setThreads(saved) }
    return try body()
  }

  /// Builds one plan per shard with `make(shard)`, concurrently on the shards' threads (as
  /// `run` runs them), each with OpenMP's thread count at 1: oneDNN picks a primitive's
  /// blocking for `omp_get_max_threads()` threads at creation, and inside the region it runs
  /// the weight reorders on the calling thread. The calling thread's thread count is unchanged.
  static func build<Plan>(_ count: Int, _ make: (Int) throws -> Plan) throws -> [Plan] {
    var built = [Plan?](repeating: nil, count: count)
    try built.withUnsafeMutableBufferPointer { slots in
      try run(count) { shard in
        try buildingSingleThreaded { slots[shard] = try make(shard) }
      }
    }
    return built.compactMap { $0 }
  }

  /// Calls `body(shard)` for every shard in `0..<count`, shard `i` on thread `i` of a new
  /// OpenMP team of `count` threads (a smaller team, e.g. when nested, takes a block of
  /// shards per thread; `KernelTeam.forEachRange`). Rethrows the error of the lowest failing
  /// shard once all have finished.
  static func run(_ count: Int, _ body: (Int) throws -> Void) throws {
    var errors = [Error?](repeating: nil, count: count)
    errors.withUnsafeMutableBufferPointer { slots in
      KernelTeam.forEachRange(count, threads: count) { shards in
        for shard in shards {
          do { try body(shard) } catch { slots[shard] = error }
        }
      }
    }
    for error in errors { if let error { throw error } }
  }

  /// Runs every shard concurrently (`run`) on its slice of a batch-major input and output:
  /// `body(shard, input, output)` with the pointers advanced to the shard's first image
  /// (`starts[shard]`), `inputPerImage` and `outputPerImage` floats an image.
  static func runSlices(
    starts: [Int], input: UnsafePointer<Float>, inputPerImage: Int,
    output: UnsafeMutablePointer<Float>, outputPerImage: Int,
    _ body: (Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) throws -> Void
  ) throws {
    try run(starts.count) { shard in
      let first = starts[shard]
      try body(shard, input + first * inputPerImage, output + first * outputPerImage)
    }
  }

  /// Runs one batch of an engine after checking its buffers: whole with `runWhole` when
  /// `whole` is true (an observed run, or an unsharded engine), otherwise as shards
  /// (`runSlices` with `runShard`). `engine` names the engine in the buffer-size error.
  static func runBatch(
    engine: String, input: UnsafeBufferPointer<Float>, expectedInputs: Int,
    output: UnsafeMutableBufferPointer<Float>, expectedOutputs: Int,
    batchSize: Int, classCount: Int, starts: [Int], whole: Bool,
    runWhole: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) throws -> Void,
    runShard: (Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) throws -> Void
  ) throws {
    guard input.count == expectedInputs, output.count == expectedOutputs,
      let inputBase = input.baseAddress, let outputBase = output.baseAddress
    else {
      throw ModelError(
        .invalidGraph,
        "\(engine): buffers of \(input.count) inputs / \(output.count) outputs, expected \(expectedInputs) / \(expectedOutputs)"
      )
    }
    if whole {
      try runWhole(inputBase, outputBase)
      return
    }
    try runSlices(
      starts: starts, input: inputBase, inputPerImage: expectedInputs / batchSize,
      output: outputBase, outputPerImage: classCount, runShard)
  }
}
