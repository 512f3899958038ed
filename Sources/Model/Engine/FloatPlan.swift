import Foundation

/// One lowered float graph for one batch size: its primitives, arena and steps. `FloatEngine`
/// runs one plan for the whole batch, or one per shard (`BatchShards`).
///
/// Not reentrant: one run at a time.
final class FloatPlan {
  let inputShape: [Int]
  let classCount: Int
  /// Floats a run reads: the product of `inputShape`.
  let inputElementCount: Int
  /// Floats `run` writes: `batchSize * classCount` for a classifier.
  let outputElementCount: Int
  /// The kernel each lowered node dispatched to, in execution order.
  let implementations: [(node: String, implementation: String)]
  /// The convolution nodes of the Split→Conv→Concat partial convolutions lowered without
  /// materialising the untouched part.
  let partialConvolutionNodes: [String]
  /// The prepared graph this plan runs.
  let graph: Graph
  /// Per lowered node, the number of steps after which its outputs are complete.
  let nodeEnds: [(node: Int, endStep: Int)]
  /// Where every observable activation lives (see `FloatEngine+Observation.swift`).
  let activations: [ValueID: FloatActivation]

  let engine: DNNLEngine
  private let steps: [FloatEngineStep]
  private let inputMemory: DNNLMemory
  private let outputMemory: DNNLMemory
  /// Arena, input copy and weight buffers; freed in deinit.
  private let ownedBuffers: [UnsafeMutableRawPointer]
  /// Keeps the memories and primitives the steps refer to alive.
  private let retained: [AnyObject]

  /// Lowers a prepared graph onto `engine`'s primitives.
  init(prepared: Graph, engine: DNNLEngine, requiresClassifierOutput: Bool) throws {
    let builder = try FloatEngineBuilder(
      graph: prepared, engine: engine, requiresClassifierOutput: requiresClassifierOutput)
    try builder.lower()
    self.engine = engine
    inputShape = builder.inputShape
    inputElementCount = builder.inputShape.reduce(1, *)
    classCount = builder.classCount
    outputElementCount = builder.outputElementCount
    steps = builder.steps
    inputMemory = builder.inputMemory
    outputMemory = builder.outputMemory
    ownedBuffers = builder.ownedBuffers
    retained = builder.retained
    implementations = builder.implementations
    partialConvolutionNodes = builder.partialConvolutions.map {
      prepared.nodes[$0.convolutionNode].name
    }
    graph = prepared
    nodeEnds = builder.nodeEnds
    activations = FloatActivation.locate(in: prepared, builder: builder)
  }

  deinit {
    for buffer in ownedBuffers { buffer.deallocate() }
  }

  /// Runs one batch from `input` (`inputElementCount` floats) into `output`
  /// (`outputElementCount` floats), calling `afterNode(index)` as soon as the outputs of node
  /// `index` of `graph` are complete.
  func run(
    input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
    afterNode: ((Int) throws -> Void)?
  ) throws {
    engine.applyThreadCount()
    // Subnormals slow oneDNN's GELU post-op (see DNNLDenormals); the caller's mode is restored.
    let savedMode = engine.enterKernelMode()
    defer { engine.leaveKernelMode(savedMode) }
    try inputMemory.setBuffer(UnsafeMutableRawPointer(mutating: input))
    try outputMemory.setBuffer(UnsafeMutableRawPointer(output))
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
