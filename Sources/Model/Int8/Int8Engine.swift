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
/// the OpenMP threads oneDNN uses (`Int8Parallel`). The classifier's last layer writes
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
  let nodeIsQuantized: [Bool]
  /// Per node: the float weights' range, for the report.
  let weightRanges: [Int: (Float, Float)]
  /// Per quantised Conv/Gemm: the integer weights and bias it runs with (for the QDQ export).
  let nodeWeights: [Int: Int8Lowering.NodeWeights]
  /// The activation encoding and weight granularity this engine was built with.
  let scheme: QuantizationScheme

  private let engine: DNNLEngine
  private let steps: [Int8Step]
  private let arena: UnsafeMutableRawPointer
  private let plan: MemoryPlan
  private let inputValue: ValueID
  private let outputValue: ValueID
  private let inputCodes: UnsafeMutableRawPointer
  private let logits: UnsafeMutablePointer<Float>
  /// The last node writes float logits directly (no output codes).
  let logitsAreFloat: Bool
  private let retained: [AnyObject]
  /// The thread count, for the float engine of the layer report.
  let threads: Int?
  /// Built on the first layer report.
  var floatEngine: FloatEngine?

  /// Quantises `graph` (prepared here for `batchSize`) with `calibration`'s thresholds and
  /// builds its kernels. Throws when a `floatNodes` name is not a node of the model, or a
  /// weight holds NaN/infinity (naming the tensor).
  public convenience init(
    graph original: Graph, batchSize: Int, calibration: Int8Calibration,
    settings: Int8Settings = Int8Settings(), threads: Int? = nil
  ) throws {
    guard batchSize > 0 else {
      throw ModelError(.invalidGraph, "int8 engine: batch size must be positive, got \(batchSize)")
    }
    let graph = try Int8Engine.prepareForInt8(original, batchSize: batchSize)
    let preparedNames = Set(graph.nodes.map(\.name))
    let originalNames = Set(original.nodes.map(\.name))
    for name in settings.floatNodes.sorted() where !preparedNames.contains(name) {
      throw ModelError(
        .invalidGraph,
        originalNames.contains(name)
          ? "floatNodes: node '\(name)' was fused into another node or folded away by graph preparation; name the Conv/Gemm it was fused into"
          : "floatNodes: the model has no node named '\(name)'")
    }
    for name in settings.int16Nodes.sorted() where !preparedNames.contains(name) {
      throw ModelError(
        .invalidGraph,
        originalNames.contains(name)
          ? "int16Nodes: node '\(name)' was fused into another node or folded away by graph preparation; name the Conv/Gemm it was fused into"
          : "int16Nodes: the model has no node named '\(name)'")
    }
    guard graph.inputs.count == 1, graph.outputs.first != nil else {
      throw ModelError(.invalidGraph, "int8 engine: expected one input and one output")
    }
    let inputValue = graph.inputs[0]

    // Activation parameters; views and max pooling keep their input's codes unchanged.
    // Outputs of `int16Nodes` are int16 symmetric (scale = T / 32767) whatever the scheme.
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
    try self.init(
      prepared: graph, params: params, explicit: nil, calibration: calibration,
      settings: settings, threads: threads, description: calibration.method.rawValue)
  }

  /// Builds the kernels of a prepared graph whose activation parameters are known: calibrated
  /// (`explicit` nil) or taken from a quantized model (`explicit` holds its weight and bias
  /// codes; values without parameters are held as float32 and computed in float).
  init(
    prepared graph: Graph, params: [ValueID: QuantParams], explicit: ExplicitQuantization?,
    calibration: Int8Calibration, settings: Int8Settings, threads: Int?, description: String
  ) throws {
    guard graph.inputs.count == 1, let output = graph.outputs.first else {
      throw ModelError(.invalidGraph, "int8 engine: expected one input and one output")
    }
    inputValue = graph.inputs[0]
    outputValue = output
    let input = try graph.shape(of: inputValue)
    let outShape = try graph.shape(of: output)
    guard outShape.count >= 2, outShape[0] == input[0] else {
      throw ModelError(
        .invalidGraph, "int8 engine: expected logits [batch, classes], got \(outShape)")
    }
    guard params[inputValue] != nil else {
      throw ModelError(
        .invalidGraph,
        "int8 engine: the model input '\(graph.values[inputValue].name)' has no quantisation parameters"
      )
    }
    self.graph = graph
    self.threads = threads
    inputShape = input
    classCount = outShape.dropFirst().reduce(1, *)
    self.calibration = calibration
    self.params = params
    int16Nodes = graph.nodes.filter { settings.int16Nodes.contains($0.name) }.map(\.name)

    // The arena holds codes: one byte per activation element.
    var codeGraph = graph
    // There is no 16-bit element type; int32 reserves (more than) enough bytes for int16 codes.
    for (id, p) in params {
      codeGraph.values[id].elementType =
        switch p.type {
        case .uint8: .uint8
        case .int16: .int32
        default: .int8
        }
    }
    let plan = try MemoryPlan(codeGraph)
    self.plan = plan
    let scratchOffset = (plan.arenaSize + 63) / 64 * 64
    let largest = plan.sizes.values.max() ?? 0
    arena = UnsafeMutableRawPointer.allocate(
      byteCount: scratchOffset + max(largest, 64), alignment: 64)
    arena.initializeMemory(as: UInt8.self, repeating: 0, count: scratchOffset + max(largest, 64))
    inputCodes = UnsafeMutableRawPointer.allocate(
      byteCount: max(input.reduce(1, *), 64), alignment: 64)
    logits = UnsafeMutablePointer<Float>.allocate(capacity: max(outShape.reduce(1, *), 16))

    let engine = try DNNLEngine(threads: threads)
    self.engine = engine
    let lowering = Int8Lowering(
      graph: graph, params: params, engine: engine, arena: arena, plan: plan,
      scratch: arena + scratchOffset, inputValue: inputValue, inputCodes: inputCodes,
      outputValue: output, logits: logits, scheme: settings.scheme,
      floatNodes: settings.floatNodes, explicit: explicit)
    try lowering.lower()
    steps = lowering.steps
    retained = lowering.retained
    logitsAreFloat = lowering.logitsAreFloat
    floatFallbackNodes = lowering.fallbackNodes
    nodeIsQuantized = lowering.nodeIsQuantized
    weightRanges = lowering.weightRanges
    nodeWeights = lowering.nodeWeights
    scheme = settings.scheme
    quantizedNodes = graph.nodes.indices.filter { lowering.nodeIsQuantized[$0] }.map {
      graph.nodes[$0].name
    }
    var info = DNNLEngine.versionInfo
    info["engine"] = "int8 (oneDNN int8 primitives, NHWC codes)"
    info["calibration"] = description
    info["threads"] = threads.map(String.init) ?? "default"
    versionInfo = info
  }

  deinit {
    arena.deallocate()
    inputCodes.deallocate()
    logits.deallocate()
  }

  public func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>)
    throws
  {
    try run(input: input, output: output, afterNode: nil)
  }

  /// Runs one batch, calling `afterNode(index, codes)` once each node's output codes are
  /// complete (for the layer report).
  func run(
    input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>,
    afterNode: ((Int, UnsafeRawPointer) throws -> Void)?
  ) throws {
    guard input.count == inputElementCount, output.count == batchSize * classCount else {
      throw ModelError(
        .invalidGraph,
        "int8 engine: buffers of \(input.count) inputs / \(output.count) outputs, expected \(inputElementCount) / \(batchSize * classCount)"
      )
    }
    engine.applyThreadCount()
    guard let inputParams = params[inputValue], let base = input.baseAddress else { return }
    switch inputParams.type {
    case .int8:
      Int8Passes.quantize(
        base, count: input.count, shape: inputShape, params: inputParams,
        into: inputCodes.assumingMemoryBound(to: Int8.self),
        threads: Int8Parallel.availableThreads)
    case .uint8:
      Int8Passes.quantize(
        base, count: input.count, shape: inputShape, params: inputParams,
        into: inputCodes.assumingMemoryBound(to: UInt8.self),
        threads: Int8Parallel.availableThreads)
    default:
      try Int8Layout.quantize(input, shape: inputShape, params: inputParams, into: inputCodes)
    }
    for step in steps {
      switch step.work {
      case .primitive(let execution):
        try execution.run()
      case .swift(let body):
        try engine.wait()
        try body()
      }
      if let node = step.completesNode, let afterNode {
        try engine.wait()
        try afterNode(node, UnsafeRawPointer(try codes(of: graph.nodes[node].outputs[0])))
      }
    }
    try engine.wait()
    if logitsAreFloat {
      _ = output.update(from: UnsafeBufferPointer(start: logits, count: output.count))
    } else {
      guard let p = params[outputValue] else { return }
      try Int8Layout.dequantize(
        UnsafeRawPointer(try codes(of: outputValue)), shape: try graph.shape(of: outputValue),
        params: p, into: output)
    }
  }

  /// Where a value's codes live.
  func codes(of value: ValueID) throws -> UnsafeMutableRawPointer {
    if value == inputValue { return inputCodes }
    if value == outputValue, logitsAreFloat { return UnsafeMutableRawPointer(logits) }
    guard let offset = plan.offsets[value] else {
      throw ModelError(
        .invalidGraph, "int8 engine: value '\(graph.values[value].name)' has no buffer")
    }
    return arena + offset
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
