import Foundation

/// The fast float32 engine: the prepared graph lowered onto oneDNN primitives.
///
/// Activations of rank 4 live channels-last (NHWC) end to end, since that is the layout
/// oneDNN's JIT kernels cover (NCHW and strided channel slices fall back to scalar reference
/// kernels); the model's NCHW input is reordered once per batch. Weights are reordered once, at
/// build time, into the layout each primitive chooses. Activations, residual sums and folded
/// BatchNorms run as post-ops of the convolutions. All intermediate values live in one arena
/// laid out by `MemoryPlan`, so a run allocates nothing.
///
/// With 2 or more threads and at least as many images as threads, the batch runs as one shard
/// per thread (`BatchShards`): each shard is a complete single-threaded plan for its slice of
/// the batch, and the shards run concurrently. Observation runs (`run(input:output:afterNode:)` with an
/// observer) use a whole-batch plan built on first use. `versionInfo["batch_shards"]` records
/// how the batch runs.
///
/// An engine is built for one batch size (oneDNN primitives are shape-specialised) and is not
/// reentrant: run it from one thread at a time.
public final class FloatEngine: InferenceEngine {
  public let name = "float"
  public let inputShape: [Int]
  public let classCount: Int
  public let versionInfo: [String: String]

  /// The kernel each lowered node dispatched to, in execution order (for tests and `--verbose`);
  /// when sharded, those of the first shard (every shard lowers the same nodes).
  var implementations: [(node: String, implementation: String)] {
    primaryPlan.implementations
  }
  /// Floats `run` writes: `batchSize * classCount` for a classifier.
  let outputElementCount: Int
  /// Split→Conv→Concat partial convolutions lowered without materialising the untouched part.
  var partialConvolutionCount: Int { primaryPlan.partialConvolutionNodes.count }

  /// The prepared graph the engine runs; the observation hook's node indices and values
  /// refer to it.
  let graph: Graph
  /// The sub-batch size of each shard, in batch order; empty when the batch runs as one plan.
  let shardSizes: [Int]

  /// The plans of the shards (sharded) or the whole-batch plan.
  private let plans: [FloatPlan]
  /// Where each shard's images start in the batch.
  private let shardStarts: [Int]
  /// The whole-batch plan for observation runs; the only plan when unsharded.
  private var wholeBatchPlan: FloatPlan?
  private let threads: Int?
  private let strict: Bool
  private let requiresClassifierOutput: Bool

  private var primaryPlan: FloatPlan { plans[0] }

  /// Prepares `graph` (shape inference, folding, fusions) for `batchSize` images and builds
  /// its primitives. `threads` sets the OpenMP thread count (nil: one per core). In `strict`
  /// mode any primitive that would run a slow reference kernel is an error.
  public convenience init(
    graph: Graph, batchSize: Int, threads: Int? = nil, strict: Bool = false
  ) throws {
    try self.init(
      graph: graph, batchSize: batchSize, threads: threads, strict: strict,
      requiresClassifierOutput: true)
  }

  /// Without `requiresClassifierOutput` the first graph output may have any shape (the op
  /// conformance tests run single ops); `run` then fills `outputElementCount` values.
  ///
  /// With `graphIsPrepared`, `graph` is taken as already prepared for `batchSize` (the int8
  /// engine's graph, whose nodes calibration and the layer report observe one for one); such
  /// an engine exists to be observed and runs unsharded. `shards` overrides the shard count
  /// (1: unsharded; nil: one per thread, see `BatchShards.sizes`).
  init(
    graph: Graph, batchSize: Int, threads: Int?, strict: Bool, requiresClassifierOutput: Bool,
    graphIsPrepared: Bool = false, shards: Int? = nil
  ) throws {
    guard batchSize > 0 else {
      throw ModelError(.invalidGraph, "batch size must be positive, got \(batchSize)")
    }
    let prepared = graphIsPrepared ? graph : try GraphPasses.prepare(graph, batchSize: batchSize)
    self.threads = threads
    self.strict = strict
    self.requiresClassifierOutput = requiresClassifierOutput
    let sizes =
      graphIsPrepared || !requiresClassifierOutput
      ? nil : BatchShards.sizes(batchSize: batchSize, threads: shards ?? threads)
    var plans: [FloatPlan] = []
    if let sizes {
      // Each shard prepares and lowers its own graph, all concurrently.
      plans = try BatchShards.build(sizes.count) { shard in
        let shardGraph = try GraphPasses.prepare(graph, batchSize: sizes[shard])
        try FloatEngine.checkAligned(shardGraph, with: prepared, batchSize: sizes[shard])
        let engine = try DNNLEngine(threads: 1, strict: strict, userScratchpad: true)
        return try FloatPlan(prepared: shardGraph, engine: engine, requiresClassifierOutput: true)
      }
      shardSizes = sizes
    } else {
      let engine = try DNNLEngine(threads: threads, strict: strict)
      let plan = try FloatPlan(
        prepared: prepared, engine: engine, requiresClassifierOutput: requiresClassifierOutput)
      plans.append(plan)
      wholeBatchPlan = plan
      shardSizes = []
    }
    self.plans = plans
    shardStarts = BatchShards.starts(of: shardSizes)
    self.graph = prepared
    let inputShape = try prepared.shape(of: prepared.inputs[0])
    self.inputShape = inputShape
    classCount = plans[0].classCount
    outputElementCount = sizes == nil ? plans[0].outputElementCount : batchSize * classCount
    var info = DNNLEngine.versionInfo(threads: threads)
    info["engine"] = "float (oneDNN primitives, NHWC)"
    info["threads"] = threads.map(String.init) ?? "default"
    info["batch_shards"] = FloatEngine.describeShards(sizes)
    info["gelu"] = GeluKernel.provenance
    info["partial_conv"] = FloatEngine.describePartialConvolutions(plans[0])
    info["conv1x1_kernel"] = FloatEngine.describePointwiseKernels(plans[0])
    self.versionInfo = info
  }

  /// What computes the plan's Split→Conv→Concat partial convolutions, for provenance: how many
  /// ran on each implementation, most first, e.g. "3 jit_wino_4x3:avx512_core, 1
  /// c:conv3x3-avx512" (one-thread batch shards keep oneDNN's convolutions), or "none".
  static func describePartialConvolutions(_ plan: FloatPlan) -> String {
    let implementationByNode = Dictionary(
      plan.implementations.map { ($0.node, $0.implementation) },
      uniquingKeysWith: { first, _ in first })
    var counts: [String: Int] = [:]
    for node in plan.partialConvolutionNodes {
      counts[implementationByNode[node] ?? "unknown", default: 0] += 1
    }
    guard !counts.isEmpty else { return "none" }
    return counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }
      .map { "\($0.value) \($0.key)" }.joined(separator: ", ")
  }

  /// How many 1×1 convolutions of the plan run on `PointwiseConvolutionKernel` rather than
  /// oneDNN, for provenance: e.g. "5 (c:conv1x1-avx512)", or "none".
  static func describePointwiseKernels(_ plan: FloatPlan) -> String {
    let count = plan.implementations.filter {
      $0.implementation == PointwiseConvolutionKernel.implementationName
    }.count
    return count == 0 ? "none" : "\(count) (\(PointwiseConvolutionKernel.implementationName))"
  }

  /// "1" or e.g. "2 (8+8 images, one thread each)", for provenance.
  static func describeShards(_ sizes: [Int]?) -> String {
    guard let sizes, sizes.count > 1 else { return "1" }
    return
      "\(sizes.count) (\(sizes.map(String.init).joined(separator: "+")) images, one thread each)"
  }

  /// A shard's graph must hold the same nodes as the whole-batch graph, in the same order:
  /// the engine's reports name nodes by their index in `graph`.
  static func checkAligned(_ shard: Graph, with whole: Graph, batchSize: Int) throws {
    guard shard.nodes.count == whole.nodes.count,
      zip(shard.nodes, whole.nodes).allSatisfy({ $0.name == $1.name })
    else {
      throw ModelError(
        .invalidGraph,
        "batch shards: the graph prepared for \(batchSize) images has different nodes than the whole batch's (\(shard.nodes.count) vs \(whole.nodes.count)); run with IMAGENET_EVAL_BATCH_SHARDS=0"
      )
    }
  }

  public func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>)
    throws
  {
    try run(input: input, output: output, afterNode: nil)
  }

  /// Runs one batch, calling `afterNode(index)` as soon as the outputs of node `index` of
  /// `graph` are complete (read them with `withActivation`, before returning). With an
  /// observer the batch runs on the whole-batch plan (built on the first such call).
  func run(
    input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>,
    afterNode: ((Int) throws -> Void)?
  ) throws {
    try BatchShards.runBatch(
      engine: "float engine", input: input, expectedInputs: inputElementCount, output: output,
      expectedOutputs: outputElementCount, batchSize: batchSize, classCount: classCount,
      starts: shardStarts, whole: afterNode != nil || shardSizes.isEmpty,
      runWhole: { input, output in
        try observationPlan().run(input: input, output: output, afterNode: afterNode)
      },
      runShard: { shard, input, output in
        try plans[shard].run(input: input, output: output, afterNode: nil)
      })
  }

  /// The whole-batch plan, built on first use when the engine is sharded.
  func observationPlan() throws -> FloatPlan {
    if let wholeBatchPlan { return wholeBatchPlan }
    let engine = try DNNLEngine(threads: threads, strict: strict)
    let plan = try FloatPlan(
      prepared: graph, engine: engine, requiresClassifierOutput: requiresClassifierOutput)
    wholeBatchPlan = plan
    return plan
  }
}

/// One unit of work of a lowered graph.
enum FloatEngineStep {
  case primitive(DNNLExecution)
  case copy(from: UnsafeRawPointer, to: UnsafeMutableRawPointer, byteCount: Int)
  case erf(UnsafePointer<Float>, UnsafeMutablePointer<Float>, count: Int)
  case kernel(FloatKernel)
}
