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
  init(
    graph: Graph, batchSize: Int, threads: Int?, strict: Bool, requiresClassifierOutput: Bool
  ) throws {
    guard batchSize > 0 else {
      throw ModelError(.invalidGraph, "batch size must be positive, got \(batchSize)")
    }
    let prepared = try GraphPasses.prepare(graph, batchSize: batchSize)
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
    guard input.count == inputElementCount, output.count == outputElementCount,
      let inputBase = input.baseAddress, let outputBase = output.baseAddress
    else {
      throw ModelError(
        .invalidGraph,
        "float engine: buffers of \(input.count) inputs / \(output.count) outputs, expected \(inputElementCount) / \(outputElementCount)"
      )
    }
    engine.applyThreadCount()
    try inputMemory.setBuffer(UnsafeMutableRawPointer(mutating: inputBase))
    try outputMemory.setBuffer(UnsafeMutableRawPointer(outputBase))
    for step in steps {
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
    }
    try engine.wait()
  }
}

/// One unit of work of a lowered graph.
enum FloatEngineStep {
  case primitive(DNNLExecution)
  case copy(from: UnsafeRawPointer, to: UnsafeMutableRawPointer, byteCount: Int)
  case erf(UnsafePointer<Float>, UnsafeMutablePointer<Float>, count: Int)
  case kernel(FloatKernel)
}
