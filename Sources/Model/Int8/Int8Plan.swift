import Foundation

/// One lowered int8 graph for one batch size: its kernels, code arena and steps. `Int8Engine`
/// runs one plan for the whole batch, or one per shard (`BatchShards`).
///
/// Not reentrant: one run at a time.
final class Int8Plan {
  let graph: Graph
  /// Per value: its quantisation parameters (activations only).
  let params: [ValueID: QuantParams]
  let inputShape: [Int]
  let classCount: Int
  /// Floats a run reads: the product of `inputShape`.
  let inputElementCount: Int
  /// The last node writes float logits directly (no output codes).
  let logitsAreFloat: Bool
  /// Nodes run in float between dequantise/quantise.
  let fallbackNodes: [String]
  /// Per node index: true when it ran an integer kernel.
  let nodeIsQuantized: [Bool]
  /// Per node: the float weights' range, for the report.
  let weightRanges: [Int: (Float, Float)]
  /// Per quantised Conv/Gemm: the integer weights and bias it runs with.
  let nodeWeights: [Int: Int8Lowering.NodeWeights]
  /// Sign shifts (`Int8SignShift`) and the convolutions reading their codes, e.g. "2 shifts
  /// for 3 convolutions"; nil when no convolution reads shifted codes.
  let signShifts: String?

  let engine: DNNLEngine
  private let steps: [Int8Step]
  private let arena: UnsafeMutableRawPointer
  private let plan: MemoryPlan
  private let inputValue: ValueID
  private let outputValue: ValueID
  private let inputCodes: UnsafeMutableRawPointer
  private let logits: UnsafeMutablePointer<Float>
  private let retained: [AnyObject]

  /// Builds the kernels of a prepared graph with known activation parameters on `engine`.
  init(
    prepared graph: Graph, params: [ValueID: QuantParams], explicit: ExplicitQuantization?,
    settings: Int8Settings, engine: DNNLEngine
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
    self.params = params
    self.engine = engine
    inputShape = input
    inputElementCount = input.reduce(1, *)
    classCount = outShape.dropFirst().reduce(1, *)

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

    let lowering = Int8Lowering(
      graph: graph, params: params, engine: engine, arena: arena, plan: plan,
      scratch: arena + scratchOffset, inputValue: inputValue, inputCodes: inputCodes,
      outputValue: output, logits: logits, scheme: settings.scheme,
      floatNodes: settings.floatNodes, explicit: explicit)
    do {
      try lowering.lower()
    } catch {
      arena.deallocate()
      inputCodes.deallocate()
      logits.deallocate()
      throw error
    }
    steps = lowering.steps
    retained = lowering.retained
    logitsAreFloat = lowering.logitsAreFloat
    fallbackNodes = lowering.fallbackNodes
    nodeIsQuantized = lowering.nodeIsQuantized
    weightRanges = lowering.weightRanges
    nodeWeights = lowering.nodeWeights
    let (shifts, readers) = (lowering.signShifts.count, lowering.signShiftReaders)
    signShifts =
      readers == 0
      ? nil
      : "\(shifts) shift\(shifts == 1 ? "" : "s") for \(readers) convolution\(readers == 1 ? "" : "s")"
  }

  deinit {
    arena.deallocate()
    inputCodes.deallocate()
    logits.deallocate()
  }

  /// Runs one batch from `input` (`inputElementCount` floats) into `output`
  /// (`inputShape[0] * classCount` floats), calling `afterNode(index, codes)` once each
  /// node's output codes are complete.
  func run(
    input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
    afterNode: ((Int, UnsafeRawPointer) throws -> Void)?
  ) throws {
    engine.applyThreadCount()
    guard let inputParams = params[inputValue] else { return }
    let inputBuffer = UnsafeBufferPointer(start: input, count: inputElementCount)
    switch inputParams.type {
    case .int8:
      Int8Passes.quantize(
        input, count: inputElementCount, shape: inputShape, params: inputParams,
        into: inputCodes.assumingMemoryBound(to: Int8.self),
        threads: KernelTeam.availableThreads)
    case .uint8:
      Int8Passes.quantize(
        input, count: inputElementCount, shape: inputShape, params: inputParams,
        into: inputCodes.assumingMemoryBound(to: UInt8.self),
        threads: KernelTeam.availableThreads)
    default:
      try Int8Layout.quantize(inputBuffer, shape: inputShape, params: inputParams, into: inputCodes)
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
    let outputCount = inputShape[0] * classCount
    if logitsAreFloat {
      output.update(from: logits, count: outputCount)
    } else {
      guard let p = params[outputValue] else { return }
      try Int8Layout.dequantize(
        UnsafeRawPointer(try codes(of: outputValue)), shape: try graph.shape(of: outputValue),
        params: p, into: UnsafeMutableBufferPointer(start: output, count: outputCount))
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
