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
/// An engine is built for one batch size (oneDNN primitives are shape-specialised) and is not
/// reentrant: run it from one thread at a time.
public final class FloatEngine: InferenceEngine {
  public let name = "float"
  public let inputShape: [Int]
  public let classCount: Int
  public let versionInfo: [String: String]

  /// The kernel each lowered node dispatched to, in execution order (for tests and `--verbose`).
  let implementations: [(node: String, implementation: String)]
  /// Floats `run` writes: `batchSize * classCount` for a classifier.
  let outputElementCount: Int
  /// Split→Conv→Concat partial convolutions lowered without materialising the untouched part.
  let partialConvolutionCount: Int

  /// The prepared graph the engine runs; the observation hook's node indices and values
  /// refer to it.
  let graph: Graph
  /// Per lowered node, the number of steps after which its outputs are complete.
  let nodeEnds: [(node: Int, endStep: Int)]
  /// Where every observable activation lives (see `FloatEngine+Observation.swift`).
  let activations: [ValueID: FloatActivation]

  private let engine: DNNLEngine
  private let steps: [FloatEngineStep]
  private let inputMemory: DNNLMemory
  private let outputMemory: DNNLMemory
  /// Arena, input copy and weight buffers; freed in deinit.
  private let ownedBuffers: [UnsafeMutableRawPointer]
  /// Keeps the memories and primitives the steps refer to alive.
  private let retained: [AnyObject]

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
  /// engine's graph, whose nodes calibration and the layer report observe one for one).
  init(
    graph: Graph, batchSize: Int, threads: Int?, strict: Bool, requiresClassifierOutput: Bool,
    graphIsPrepared: Bool = false
  ) throws {
    guard batchSize > 0 else {
      throw ModelError(.invalidGraph, "batch size must be positive, got \(batchSize)")
    }
    let prepared = graphIsPrepared ? graph : try GraphPasses.prepare(graph, batchSize: batchSize)
    let engine = try DNNLEngine(threads: threads, strict: strict)
    let builder = try FloatEngineBuilder(
      graph: prepared, engine: engine, requiresClassifierOutput: requiresClassifierOutput)
    try builder.lower()
    self.engine = engine
    self.inputShape = builder.inputShape
    self.classCount = builder.classCount
    self.outputElementCount = builder.outputElementCount
    self.steps = builder.steps
    self.inputMemory = builder.inputMemory
    self.outputMemory = builder.outputMemory
    self.ownedBuffers = builder.ownedBuffers
    self.retained = builder.retained
    self.implementations = builder.implementations
    self.partialConvolutionCount = builder.partialConvolutionCount
    self.graph = prepared
    self.nodeEnds = builder.nodeEnds
    self.activations = FloatActivation.locate(in: prepared, builder: builder)
    var info = DNNLEngine.versionInfo
    info["engine"] = "float (oneDNN primitives, NHWC)"
    info["threads"] = threads.map(String.init) ?? "default"
    self.versionInfo = info
  }

  deinit {
    for buffer in ownedBuffers { buffer.deallocate() }
  }

  public func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>)
    throws
  {
    try run(input: input, output: output, afterNode: nil)
  }

  /// Runs one batch, calling `afterNode(index)` as soon as the outputs of node `index` of
  /// `graph` are complete (read them with `withActivation`, before returning).
  func run(
    input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>,
    afterNode: ((Int) throws -> Void)?
  ) throws {
    guard input.count == inputElementCount, output.count == outputElementCount,
      let inputBase = input.baseAddress, let outputBase = output.baseAddress
    else {
      throw ModelError(
        .invalidGraph,
        "float engine: buffers of \(input.count) inputs / \(output.count) outputs, expected \(inputElementCount) / \(outputElementCount)"
      )
    }
    engine.applyThreadCount()
    // Subnormals slow oneDNN's GELU post-op (see DNNLDenormals); the caller's mode is restored.
    let savedMode = engine.enterKernelMode()
    defer { engine.leaveKernelMode(savedMode) }
    try inputMemory.setBuffer(UnsafeMutableRawPointer(mutating: inputBase))
    try outputMemory.setBuffer(UnsafeMutableRawPointer(outputBase))
    var nextNode = 0
    for (index, step) in steps.enumerated() {
      switch step {
      case .primitive(let execution):
        try execution.run()
      case .copy(let source, let destination, let byteCount):
        try engine.wait()
        destination.copyMemory(from: source, byteCount: byteCount)
      case .erf(let source, let destination, let count):
        try engine.wait()
        for index in 0..<count { destination[index] = Foundation.erf(source[index]) }
      case .kernel(let kernel):
        try engine.wait()
        try kernel.run()
      }
      if let afterNode, nextNode < nodeEnds.count, nodeEnds[nextNode].endStep <= index + 1 {
        try engine.wait()
        // Observers see the caller's floating-point mode, not the kernels'.
        engine.leaveKernelMode(savedMode)
        while nextNode < nodeEnds.count, nodeEnds[nextNode].endStep <= index + 1 {
          try afterNode(nodeEnds[nextNode].node)
          nextNode += 1
        }
        if savedMode != nil { _ = DNNLDenormals.enter() }
      }
    }
    try engine.wait()
    engine.leaveKernelMode(savedMode)
    if let afterNode {
      for end in nodeEnds[nextNode...] { try afterNode(end.node) }
    }
  }
}

/// One unit of work of a lowered graph.
enum FloatEngineStep {
  case primitive(DNNLExecution)
  case copy(from: UnsafeRawPointer, to: UnsafeMutableRawPointer, byteCount: Int)
  case erf(UnsafePointer<Float>, UnsafeMutablePointer<Float>, count: Int)
  case kernel(FloatKernel)
}
