import Foundation

/// The int8 engine: a float model quantised after training (see `calibrate`) and run with
/// integer kernels.
///
/// Every activation is held as 8-bit codes (the scheme's per-tensor parameters), channels-last
/// for rank 4, in one arena laid out by `MemoryPlan`. Convolutions (incl. depthwise and fused
/// ReLU/ReLU6/Clip and residual sums) and Gemms run as oneDNN int8 primitives (s8 weights per
/// output channel, int32 bias, per-channel output scales); max pooling runs on codes; residual
/// Adds that did not fuse, global average pooling, the input quantisation, Split/Concat and the
/// 256-entry lookup tables of standalone Sigmoid/Tanh/HardSwish/GELU run as the vectorised
/// passes of `Int8Passes` (bit-identical to `ReferenceKernels` and `Int8Layout`), split across
/// the OpenMP threads oneDNN uses (`KernelTeam`). The classifier's last layer writes
/// float logits directly (`m·(acc + bias)`, not rounded to codes). Anything else runs in float
/// between explicit dequantise/quantise and is listed in `floatFallbackNodes`.
///
/// Not reentrant; build one per batch size.
public final class Int8Engine: InferenceEngine {
  public let name = "int8"
  public let inputShape: [Int]
  public let classCount: Int
  public let versionInfo: [String: String]
  /// Nodes run in float between dequantise/quantise (unsupported ops and `floatNodes`).
  public let floatFallbackNodes: [String]
  /// Nodes run with integer kernels.
  public let quantizedNodes: [String]
  /// Nodes whose output activations are held as int16 codes (`Int8Settings.int16Nodes`,
  /// symmetric, scale = T / 32767), in graph order. Convolutions reading or writing int16
  /// codes run the scalar integer kernel (`ReferenceKernels.conv2d`: int8 weights, exact
  /// integer accumulation, the int8 kernels' requantisation); any other node touching int16
  /// codes runs in float on the dequantised int16 grid ("int16 grid, float accumulation")
  /// and is listed in `floatFallbackNodes`.
  public let int16Nodes: [String]
  /// The calibration this engine was built from.
  public let calibration: Int8Calibration

  let graph: Graph
  /// Per value: its quantisation parameters (activations only).
  let params: [ValueID: QuantParams]
  /// Per node index: true when it ran an integer kernel (what the layer report compares).
  var nodeIsQuantized: [Bool] { plans[0].nodeIsQuantized }
  /// Per node: the float weights' range, for the report.
  var weightRanges: [Int: (Float, Float)] { plans[0].weightRanges }
  /// Per quantised Conv/Gemm: the integer weights and bias it runs with (for the QDQ export).
  var nodeWeights: [Int: Int8Lowering.NodeWeights] { plans[0].nodeWeights }
  /// The activation encoding and weight granularity this engine was built with.
  let scheme: QuantizationScheme
  /// The last node writes float logits directly (no output codes).
  var logitsAreFloat: Bool { plans[0].logitsAreFloat }
  /// The thread count, for the float engine of the layer report.
  let threads: Int?
  /// Built on the first layer report.
  var floatEngine: FloatEngine?
  /// The sub-batch size of each shard, in batch order; empty when the batch runs as one plan.
  let shardSizes: [Int]

  /// What a plan is built from: a prepared graph, its parameters, a quantized model's codes.
  typealias PlanSource = (
    graph: Graph, params: [ValueID: QuantParams], explicit: ExplicitQuantization?
  )

  /// The shards' plans, or the whole-batch plan.
  private let plans: [Int8Plan]
  /// Where each shard's images start in the batch.
  private let shardStarts: [Int]
  /// The whole-batch plan for observation runs; the only plan when unsharded.
  private var wholeBatchPlan: Int8Plan?
  private let explicit: ExplicitQuantization?
  private let settings: Int8Settings

  /// Quantises `graph` (prepared here for `batchSize`) with `calibration`'s thresholds and
  /// builds its kernels. Throws when a `floatNodes` name is not a node of the model, or a
  /// weight holds NaN/infinity (naming the tensor).
  ///
  /// With 2 or more threads and at least as many images as threads, the batch runs as one
  /// single-threaded shard per thread (`BatchShards`); `versionInfo["batch_shards"]` records it.
  public convenience init(
    graph original: Graph, batchSize: Int, calibration: Int8Calibration,
    settings: Int8Settings = Int8Settings(), threads: Int? = nil
  ) throws {
    try self.init(
      graph: original, batchSize: batchSize, calibration: calibration, settings: settings,
      threads: threads, shards: nil)
  }

  /// `shards` overrides the shard count (1: unsharded; nil: one per thread).
  convenience init(
    graph original: Graph, batchSize: Int, calibration: Int8Calibration,
    settings: Int8Settings, threads: Int?, shards: Int?
  ) throws {
    guard batchSize > 0 else {
      throw ModelError(.invalidGraph, "int8 engine: batch size must be positive, got \(batchSize)")
    }
    let graph = try Int8Engine.prepareForInt8(original, batchSize: batchSize)
    let preparedNames = Set(graph.nodes.map(\.name))
    let originalNames = Set(original.nodes.map(\.name))
    for (setting, names) in [
      ("floatNodes", settings.floatNodes), ("int16Nodes", settings.int16Nodes),
    ] {
      for name in names.sorted() where !preparedNames.contains(name) {
        throw ModelError(
          .invalidGraph,
          originalNames.contains(name)
            ? "\(setting): node '\(name)' was fused into another node or folded away by graph preparation; name the Conv/Gemm it was fused into"
            : "\(setting): the model has no node named '\(name)'")
      }
    }
    guard graph.inputs.count == 1, graph.outputs.first != nil else {
      throw ModelError(.invalidGraph, "int8 engine: expected one input and one output")
    }
    let params = try Int8Engine.calibratedParams(
      graph, calibration: calibration, settings: settings)
    try self.init(
      prepared: graph, params: params, explicit: nil, calibration: calibration,
      settings: settings, threads: threads, description: calibration.method.rawValue,
      shards: shards
    ) { size in
      let shard = try Int8Engine.prepareForInt8(original, batchSize: size)
      let shardParams = try Int8Engine.calibratedParams(
        shard, calibration: calibration, settings: settings)
      return (shard, shardParams, nil)
    }
  }

  /// The activation parameters of a graph prepared for int8, from `calibration`'s thresholds.
  /// Views and max pooling keep their input's codes unchanged; outputs of `int16Nodes` are
  /// int16 symmetric (scale = T / 32767) whatever the scheme.
  static func calibratedParams(
    _ graph: Graph, calibration: Int8Calibration, settings: Int8Settings
  ) throws -> [ValueID: QuantParams] {
    let inputValue = graph.inputs[0]
    var int16Values = Set<ValueID>()
    for node in graph.nodes where settings.int16Nodes.contains(node.name) {
      for out in node.outputs where graph.constants[out] == nil { int16Values.insert(out) }
    }
    var params: [ValueID: QuantParams] = [:]
    func activationParams(_ id: ValueID) throws -> QuantParams {
      let name = graph.values[id].name
      guard let threshold = calibration.thresholds[name],
        let low = calibration.minimums[name], let high = calibration.maximums[name]
      else {
        throw ModelError(
          .invalidGraph, "int8 engine: tensor '\(name)' has no calibration threshold")
      }
      if int16Values.contains(id) {
        return try .symmetric(threshold: threshold, type: .int16)
      }
      return try settings.scheme.activationParams(threshold: threshold, minimum: low, maximum: high)
    }
    params[inputValue] = try activationParams(inputValue)
    for node in graph.nodes {
      for out in node.outputs where graph.constants[out] == nil {
        if Int8Lowering.keepsInputCodes(node.op), let first = params[node.inputs[0]] {
          params[out] = first
        } else {
          params[out] = try activationParams(out)
        }
      }
    }
    return params
  }

  /// Builds the kernels of a prepared graph whose activation parameters are known: calibrated
  /// (`explicit` nil) or taken from a quantized model (`explicit` holds its weight and bias
  /// codes; values without parameters are held as float32 and computed in float).
  ///
  /// With `shardSource` (the same graph and parameters derived for another batch size) and
  /// more than one thread, the batch runs as one single-threaded plan per thread
  /// (`BatchShards`); `shards` overrides the shard count (1: unsharded).
  init(
    prepared graph: Graph, params: [ValueID: QuantParams], explicit: ExplicitQuantization?,
    calibration: Int8Calibration, settings: Int8Settings, threads: Int?, description: String,
    shards: Int? = nil, shardSource: ((Int) throws -> PlanSource)? = nil
  ) throws {
    guard graph.inputs.count == 1, let output = graph.outputs.first else {
      throw ModelError(.invalidGraph, "int8 engine: expected one input and one output")
    }
    let input = try graph.shape(of: graph.inputs[0])
    let outShape = try graph.shape(of: output)
    guard outShape.count >= 2, outShape[0] == input[0] else {
      throw ModelError(
        .invalidGraph, "int8 engine: expected logits [batch, classes], got \(outShape)")
    }
    self.graph = graph
    self.threads = threads
    self.explicit = explicit
    self.settings = settings
    inputShape = input
    classCount = outShape.dropFirst().reduce(1, *)
    self.calibration = calibration
    self.params = params
    int16Nodes = graph.nodes.filter { settings.int16Nodes.contains($0.name) }.map(\.name)
    scheme = settings.scheme

    let sizes =
      shardSource == nil ? nil : BatchShards.sizes(batchSize: input[0], threads: shards ?? threads)
    var plans: [Int8Plan] = []
    if let sizes, let shardSource {
      // Each shard prepares and lowers its own graph, all concurrently.
      plans = try BatchShards.build(sizes.count) { shard in
        let source = try shardSource(sizes[shard])
        try FloatEngine.checkAligned(source.graph, with: graph, batchSize: sizes[shard])
        let engine = try DNNLEngine(threads: 1, userScratchpad: true)
        return try Int8Plan(
          prepared: source.graph, params: source.params, explicit: source.explicit,
          settings: settings, engine: engine)
      }
      shardSizes = sizes
    } else {
      let plan = try Int8Plan(
        prepared: graph, params: params, explicit: explicit, settings: settings,
        engine: try DNNLEngine(threads: threads))
      plans.append(plan)
      wholeBatchPlan = plan
      shardSizes = []
    }
    self.plans = plans
    shardStarts = BatchShards.starts(of: shardSizes)
    floatFallbackNodes = plans[0].fallbackNodes
    quantizedNodes = graph.nodes.indices.filter { plans[0].nodeIsQuantized[$0] }.map {
      graph.nodes[$0].name
    }
    var info = DNNLEngine.versionInfo(threads: threads)
    info["engine"] = "int8 (oneDNN int8 primitives, NHWC codes)"
    info["calibration"] = description
    info["threads"] = threads.map(String.init) ?? "default"
    info["batch_shards"] = FloatEngine.describeShards(sizes)
    info["int8_kernels"] = Int8Engine.vectorKernels
    info["sign_shift"] = plans[0].signShifts
    versionInfo = info
  }

  public func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>)
    throws
  {
    try run(input: input, output: output, afterNode: nil)
  }

  /// Runs one batch, calling `afterNode(index, codes)` once each node's output codes are
  /// complete (for the layer report). With an observer the batch runs on the whole-batch plan
  /// (built on the first such call).
  func run(
    input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>,
    afterNode: ((Int, UnsafeRawPointer) throws -> Void)?
  ) throws {
    try BatchShards.runBatch(
      engine: "int8 engine", input: input, expectedInputs: inputElementCount, output: output,
      expectedOutputs: batchSize * classCount, batchSize: batchSize, classCount: classCount,
      starts: shardStarts, whole: afterNode != nil || shardSizes.isEmpty,
      runWhole: { input, output in
        try observationPlan().run(input: input, output: output, afterNode: afterNode)
      },
      runShard: { shard, input, output in
        try plans[shard].run(input: input, output: output, afterNode: nil)
      })
  }

  /// Where a value's codes live in the whole-batch plan (valid during and after an
  /// observation run).
  func codes(of value: ValueID) throws -> UnsafeMutableRawPointer {
    try observationPlan().codes(of: value)
  }

  /// Which `CInt8Kernels` kernels run vectorised on this CPU, for `versionInfo["int8_kernels"]`:
  /// `avx512bw` (byte lookups and input quantisation) and `avx2-fma` (QLinearAdd) joined by
  /// `+`, or `scalar` when neither does.
  static var vectorKernels: String {
    let kernels = [
      Int8Passes.usesVectorLookup ? "avx512bw" : nil,
      Int8AddTableKernel.vectorized ? "avx2-fma" : nil,
    ].compactMap { $0 }
    return kernels.isEmpty ? "scalar" : kernels.joined(separator: "+")
  }

  /// The whole-batch plan, built on first use when the engine is sharded.
  private func observationPlan() throws -> Int8Plan {
    if let wholeBatchPlan { return wholeBatchPlan }
    let plan = try Int8Plan(
      prepared: graph, params: params, explicit: explicit, settings: settings,
      engine: try DNNLEngine(threads: threads))
    wholeBatchPlan = plan
    return plan
  }
}

/// One unit of work; `completesNode` marks the last step of a node.
struct Int8Step {
  enum Work {
    case primitive(DNNLExecution)
    case swift(() throws -> Void)
  }
  var work: Work
  var completesNode: Int?
}
