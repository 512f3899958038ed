import Foundation

/// Lowers a prepared graph onto oneDNN primitives for `FloatEngine`.
final class FloatEngineBuilder {
  let graph: Graph
  let engine: DNNLEngine
  let plan: MemoryPlan
  let inputShape: [Int]
  let classCount: Int
  let outputElementCount: Int

  private(set) var steps: [FloatEngineStep] = []
  private(set) var ownedBuffers: [UnsafeMutableRawPointer] = []
  private(set) var retained: [AnyObject] = []
  private(set) var implementations: [(node: String, implementation: String)] = []
  /// Per lowered node (index in `graph`), the number of steps once its outputs are complete.
  private(set) var nodeEnds: [(node: Int, endStep: Int)] = []
  private(set) var inputMemory: DNNLMemory
  private(set) var outputMemory: DNNLMemory

  private let arena: UnsafeMutableRawPointer
  /// A region after the arena that no value uses, for layout changes that cannot be in place.
  private let scratch: UnsafeMutableRawPointer
  private let inputValue: ValueID
  private let inputBuffer: UnsafeMutableRawPointer
  private var constantMemories: [ValueID: DNNLMemory] = [:]

  init(graph: Graph, engine: DNNLEngine, requiresClassifierOutput: Bool = true) throws {
    self.graph = graph
    self.engine = engine
    guard graph.inputs.count == 1, let output = graph.outputs.first else {
      throw ModelError(
        .invalidGraph,
        "float engine: expected one input and at least one output, got \(graph.inputs.count) inputs"
      )
    }
    inputValue = graph.inputs[0]
    let input = try graph.shape(of: inputValue)
    let logits = try graph.shape(of: output)
    let classifierShaped = logits.count >= 2 && logits.first == input.first
    guard graph.values[inputValue].elementType == .float32,
      classifierShaped || !requiresClassifierOutput, graph.values[output].elementType == .float32
    else {
      throw ModelError(
        .invalidGraph,
        "float engine: expected float32 input [batch, …] and logits [batch, classes], got \(input) -> \(logits)"
      )
    }
    inputShape = input
    classCount = logits.dropFirst().reduce(1, *)
    outputElementCount = logits.reduce(1, *)
    plan = try MemoryPlan(graph)
    let largest = plan.sizes.values.max() ?? 0
    let scratchOffset = (plan.arenaSize + 63) / 64 * 64
    let arenaBytes = scratchOffset + max(largest, 64)
    arena = UnsafeMutableRawPointer.allocate(byteCount: arenaBytes, alignment: 64)
    arena.initializeMemory(as: UInt8.self, repeating: 0, count: arenaBytes)
    scratch = arena + scratchOffset
    ownedBuffers.append(arena)
    let inputBytes = input.reduce(1, *) * 4
    inputBuffer = UnsafeMutableRawPointer.allocate(byteCount: max(inputBytes, 64), alignment: 64)
    ownedBuffers.append(inputBuffer)

    // The caller's buffers, rebound on every run.
    inputMemory = try DNNLMemory(
      Self.plainDescriptor(input, .f32), engine: engine, buffer: nil)
    outputMemory = try DNNLMemory(
      Self.plainDescriptor(logits, .f32), engine: engine, buffer: nil)
  }

  deinit {}

  // MARK: Lowering

  func lower() throws {
    // Input: the model's layout (NCHW) to the engine's (NHWC), once per batch.
    let inputDescriptor = try descriptor(inputValue)
    let inputCopy = try DNNLMemory(inputDescriptor, engine: engine, buffer: inputBuffer)
    try addReorder(
      from: inputMemory, to: inputCopy, label: "input '\(graph.values[inputValue].name)'")

    findPartialConvolutions()
    var unsupported: [String] = []
    for (index, node) in graph.nodes.enumerated() {
      do {
        try lower(node)
        nodeEnds.append((index, steps.count))
      } catch let error as UnsupportedNode {
        unsupported.append("'\(node.name)' (\(node.op.name)): \(error.reason)")
      }
    }
    for partial in partialByConcat.values where partial.outputLivesInConcat {
      if let at = nodeEnds.firstIndex(where: { $0.node == partial.convolutionNode }),
        at + 1 < nodeEnds.count
      {
        nodeEnds[at].endStep = nodeEnds[at + 1].endStep
      }
    }
    guard unsupported.isEmpty else {
      throw ModelError(
        .unsupportedOperators,
        "float engine cannot run \(unsupported.count) node(s): "
          + unsupported.joined(separator: "; "))
    }

    let output = graph.outputs[0]
    try addReorder(
      from: memory(output), to: outputMemory, label: "output '\(graph.values[output].name)'")
  }

  private struct UnsupportedNode: Error { var reason: String }

  private func lower(_ node: Node) throws {
    switch node.op {
    case .cast, .gather, .transpose, .pad, .slice, .split, .concat, .flatten, .reshape, .squeeze,
      .unsqueeze, .identity:
      // Data movement works on any element type.
      break
    default:
      for id in node.inputs + node.outputs where graph.values[id].elementType != .float32 {
        throw UnsupportedNode(
          reason: "value '\(graph.values[id].name)' is \(graph.values[id].elementType)")
      }
    }
    switch node.op {
    case .conv(let attributes):
      // A partial convolution's kernel runs with its concat.
      if partialByConvolutionOutput[node.outputs[0]]?.usesKernel == true { return }
      try lowerConvolution(node, attributes)
    case .gemm(let attributes): try lowerGemm(node, attributes)
    case .matMul: try lowerMatMul(node)
    case .binary(let op): try lowerBinary(node, op)
    case .activation(let activation): try lowerActivation(node, activation)
    case .erf: try lowerErf(node)
    case .softmax(let axis, let coerce): try lowerSoftmax(node, axis: axis, coerceTo2D: coerce)
    case .batchNormalization(let epsilon): try lowerBatchNormalization(node, epsilon: epsilon)
    case .scaleShift:
      try lowerScaleShift(
        node, scale: constantFloats(node.inputs[1]), shift: constantFloats(node.inputs[2]))
    case .maxPool(let pooling): try lowerPooling(node, pooling, algorithm: .max)
    case .averagePool(let pooling):
      try lowerPooling(
        node, pooling,
        algorithm: pooling.countIncludePad ? .averageIncludingPadding : .averageExcludingPadding)
    case .globalAveragePool: try lowerGlobalAverage(node)
    case .reduceMean(let axes, _): try lowerReduceMean(node, axes: axes)
    case .flatten, .reshape, .squeeze, .unsqueeze, .identity: try lowerView(node)
    case .concat(let axis):
      if let partial = partialByConcat[node.outputs[0]] {
        try lowerPartialConcat(node, partial)
      } else {
        try lowerConcat(node, axis: axis)
      }
    case .split(let axis, _):
      if let partial = partialBySplit[node.inputs[0]], partial.convolved == node.outputs[0] {
        try lowerPartialSplit(node, partial)
      } else {
        try lowerSplit(node, axis: axis)
      }
    case .slice(let starts, let ends, let axes, let steps):
      try lowerSlice(node, starts: starts, ends: ends, axes: axes, steps: steps)
    case .transpose(let perm): try lowerTranspose(node, perm: perm)
    case .pad(let mode, let pads, let value):
      try lowerPad(node, mode: mode, pads: pads, value: value)
    case .gather(let axis): try lowerGather(node, axis: axis)
    case .cast(let type): try lowerCast(node, to: type)
    default:
      throw UnsupportedNode(reason: "no oneDNN lowering for this op")
    }
  }

  private func lowerConvolution(_ node: Node, _ c: Convolution) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let xShape = try graph.shape(of: x)
    guard (3...4).contains(xShape.count), c.kernelShape.count == xShape.count - 2 else {
      throw UnsupportedNode(reason: "only 1D and 2D convolutions are lowered")
    }
    guard let weights = graph.constants[node.inputs[1]]?.floats else {
      throw UnsupportedNode(reason: "weights are not a float constant")
    }
    let weightShape = try graph.shape(of: node.inputs[1])
    let bias = try node.convolutionBias.map(constantFloats)
    if let operand = node.sumOperand { try placeSumOperand(operand, into: output) }
    let (chain, gelu) = splittingGelu(c.postOps)
    if let kernel = try pointwiseKernel(
      node, c, xShape: xShape, weights: weights, weightShape: weightShape, bias: bias,
      chain: chain)
    {
      addKernel(kernel, label: node.name)
    } else {
      try addConvolutionPrimitive(
        node, c, weights: weights, weightShape: weightShape, bias: bias, chain: chain)
    }
    if gelu {
      let buffer = try pointer(output)
      addGelu(
        from: buffer, to: buffer, count: try graph.shape(of: output).reduce(1, *), node: node)
    }
  }

  /// The AVX-512 kernel for a 1×1 convolution it computes and is expected to run faster than
  /// oneDNN (`PointwiseConvolutionKernel`), or nil.
  private func pointwiseKernel(
    _ node: Node, _ c: Convolution, xShape: [Int], weights: [Float], weightShape: [Int],
    bias: [Float]?, chain: [PostOp]
  ) throws -> PointwiseConvolutionKernel? {
    let (x, output) = (node.inputs[0], node.outputs[0])
    guard PointwiseConvolutionKernel.isEnabled, xShape.count == 4,
      PointwiseConvolutionKernel.accepts(c, weightShape: weightShape),
      let epilogue = PointwiseConvolutionKernel.Epilogue(chain),
      !channelBlocked.contains(x), !channelBlocked.contains(output)
    else { return nil }
    let pixels = xShape[0] * xShape[2] * xShape[3]
    guard
      let split = PointwiseConvolutionKernel.split(
        pixels: pixels, inputs: weightShape[1], outputs: weightShape[0], threads: teamThreads)
    else { return nil }
    return PointwiseConvolutionKernel(
      source: try pointer(x).assumingMemoryBound(to: Float.self),
      destination: try pointer(output).assumingMemoryBound(to: Float.self), weights: weights,
      bias: bias, pixels: pixels, inputs: weightShape[1], outputs: weightShape[0],
      epilogue: epilogue, split: split)
  }

  private func addConvolutionPrimitive(
    _ node: Node, _ c: Convolution, weights: [Float], weightShape: [Int], bias: [Float]?,
    chain: [PostOp]
  ) throws {
    let (x, output) = (node.inputs[0], node.outputs[0])
    let weightDims =
      c.group == 1
      ? weightShape
      : [c.group, weightShape[0] / c.group] + weightShape.dropFirst()
    let biasDescriptor = try bias.map {
      try DNNLMemoryDescriptor(dims: [$0.count], dataType: .f32, format: .a)
    }
    let spatial = c.kernelShape.count
    let attributes = DNNLAttributes(postOps: try postOps(chain))
    func make(_ algorithm: DNNLConvolutionAlgorithm) throws -> DNNLPrimitive {
      try engine.makeConvolution(
        source: descriptor(x),
        weights: DNNLMemoryDescriptor(dims: weightDims, dataType: .f32, format: .any),
        bias: biasDescriptor, destination: descriptor(output), strides: c.strides,
        dilations: c.dilations, paddingLeft: Array(c.pads[0..<spatial]),
        paddingRight: Array(c.pads[spatial..<(2 * spatial)]), algorithm: algorithm,
        attributes: attributes, label: node.name)
    }
    let primitive: DNNLPrimitive
    if partialByConvolutionOutput[output]?.lowering == .winograd {
      // oneDNN has no Winograd kernel for some CPUs and shapes; the direct convolution takes
      // the same channel-blocked copies, and `implementations` names what was built.
      do {
        primitive = try make(.winograd)
      } catch let error as DNNLError where error.reason == "unimplemented" {
        primitive = try make(.direct)
      }
    } else {
      primitive = try make(.direct)
    }
    var arguments: [(DNNLArgument, DNNLMemory)] = [
      (.source, try memory(x)),
      (
        .weights,
        try constantMemory(weights, dims: weightDims, as: primitive.memoryDescriptor(.weights))
      ),
      (.destination, try memory(output)),
    ]
    if let bias, let biasDescriptor {
      arguments.append(
        (.bias, try constantMemory(bias, dims: biasDescriptor.dims, as: biasDescriptor)))
    }
    add(primitive, arguments, node: node)
  }

  /// A fused residual sum accumulates into the output buffer, so the operand must be there
  /// first; the memory plan usually put it there already.
  private func placeSumOperand(_ operand: ValueID, into output: ValueID) throws {
    if let partial = pendingRestores.removeValue(forKey: operand) {
      // The operand's first channels were overwritten by an in-place partial conv.
      let label = "restore '\(graph.values[operand].name)'"
      if let kernel = partialKernels[operand] {
        addKernel(kernel.restoring(), label: label)
      } else {
        let part = try descriptor(operand).submemory(
          dims: try graph.shape(of: partial.convolved), offsets: [0, 0, 0, 0])
        try addReorder(
          from: memory(partial.convolved),
          to: DNNLMemory(part, engine: engine, buffer: pointer(operand)), label: label)
      }
    }
    let source = try pointer(operand)
    let destination = try pointer(output)
    if source != UnsafeRawPointer(destination) {
      steps.append(.copy(from: source, to: destination, byteCount: try byteCount(output)))
    }
  }

  private func lowerGemm(_ node: Node, _ g: Gemm) throws {
    let a = node.inputs[0]
    let stored = try graph.shape(of: a)
    guard stored.count == 2 else { throw UnsupportedNode(reason: "a non-2D A is not lowered") }
    let aShape = g.transA ? [stored[1], stored[0]] : stored
    var source = try pointer(a)
    if g.transA {
      // A is stored [K, M]: a reorder from a transposed-strides view makes it [M, K].
      let view = try DNNLMemoryDescriptor(
        dims: aShape, dataType: .f32, strides: [1, aShape[0]])
      source = temporary(try byteCount(a))
      try addReorder(
        from: DNNLMemory(view, engine: engine, buffer: pointer(a)),
        to: DNNLMemory(Self.plainDescriptor(aShape, .f32), engine: engine, buffer: source),
        label: "\(node.name) (transA)")
    }
    guard let b = graph.constants[node.inputs[1]]?.floats else {
      throw UnsupportedNode(reason: "B is not a float constant")
    }
    // Inner product wants weights as [N, K]; alpha folds into them.
    let (weights, k, n) = g.innerProductWeights(b, shape: try graph.shape(of: node.inputs[1]))
    var bias: [Float]?
    if node.inputs.count > 2 {
      let c = try constantFloats(node.inputs[2])
      if c.count == n {
        bias = c.map { $0 * g.beta }
      } else if c.count == 1 {
        bias = [Float](repeating: c[0] * g.beta, count: n)
      } else {
        throw UnsupportedNode(reason: "C of \(c.count) elements is not a per-column bias")
      }
    }
    try addInnerProduct(
      node, source: source, destination: pointer(node.outputs[0]), rows: aShape[0], inner: k,
      columns: n, weights: weights, bias: bias, postOps: g.postOps)
  }

  private func lowerMatMul(_ node: Node) throws {
    let a = node.inputs[0]
    let b = node.inputs[1]
    let output = node.outputs[0]
    let aShape = try graph.shape(of: a)
    let bShape = try graph.shape(of: b)
    if let constant = graph.constants[b]?.floats, bShape.count == 2 {
      // Rows of A (any rank) times a constant matrix: an inner product with reordered weights.
      let (k, n) = (bShape[0], bShape[1])
      var weights = [Float](repeating: 0, count: n * k)
      for row in 0..<n {
        for column in 0..<k { weights[row * k + column] = constant[column * n + row] }
      }
      let destination = try rowMajorTarget(output)
      try addInnerProduct(
        node, source: rowMajor(a, label: node.name), destination: destination,
        rows: aShape.dropLast().reduce(1, *), inner: k, columns: n, weights: weights, bias: nil,
        postOps: [])
      try finishRowMajor(output, from: destination, label: node.name)
      return
    }
    // numpy matmul: vectors gain a unit dimension, batch dimensions broadcast.
    var a2 = aShape.count == 1 ? [1] + aShape : aShape
    var b2 = bShape.count == 1 ? bShape + [1] : bShape
    let rank = max(a2.count, b2.count)
    a2 = [Int](repeating: 1, count: rank - a2.count) + a2
    b2 = [Int](repeating: 1, count: rank - b2.count) + b2
    var y2 = [a2[rank - 2], b2[rank - 1]]
    for d in (0..<(rank - 2)).reversed() {
      guard a2[d] == b2[d] || a2[d] == 1 || b2[d] == 1 else {
        throw UnsupportedNode(reason: "batch dimensions \(aShape) and \(bShape) do not broadcast")
      }
      y2.insert(max(a2[d], b2[d]), at: 0)
    }
    let aDescriptor = try Self.plainDescriptor(a2, .f32)
    let bDescriptor = try Self.plainDescriptor(b2, .f32)
    let yDescriptor = try Self.plainDescriptor(y2, .f32)
    let primitive = try engine.makeMatmul(
      source: aDescriptor, weights: bDescriptor, bias: nil, destination: yDescriptor,
      label: node.name)
    let destination = try rowMajorTarget(output)
    add(
      primitive,
      [
        (
          .source,
          try DNNLMemory(aDescriptor, engine: engine, buffer: rowMajor(a, label: node.name))
        ),
        (
          .weights,
          try DNNLMemory(bDescriptor, engine: engine, buffer: rowMajor(b, label: node.name))
        ),
        (.destination, try DNNLMemory(yDescriptor, engine: engine, buffer: destination)),
      ], node: node)
    try finishRowMajor(output, from: destination, label: node.name)
  }

  private func addInnerProduct(
    _ node: Node, source: UnsafeMutableRawPointer, destination: UnsafeMutableRawPointer, rows: Int,
    inner: Int, columns: Int, weights: [Float], bias: [Float]?, postOps chain: [PostOp]
  ) throws {
    let sourceDescriptor = try DNNLMemoryDescriptor(
      dims: [rows, inner], dataType: .f32, format: .ab)
    let destinationDescriptor = try DNNLMemoryDescriptor(
      dims: [rows, columns], dataType: .f32, format: .ab)
    let biasDescriptor = try bias.map { _ in
      try DNNLMemoryDescriptor(dims: [columns], dataType: .f32, format: .a)
    }
    let (remaining, gelu) = splittingGelu(chain)
    let primitive = try engine.makeInnerProduct(
      source: sourceDescriptor,
      weights: DNNLMemoryDescriptor(dims: [columns, inner], dataType: .f32, format: .any),
      bias: biasDescriptor, destination: destinationDescriptor,
      attributes: DNNLAttributes(postOps: try postOps(remaining)), label: node.name)
    var arguments: [(DNNLArgument, DNNLMemory)] = [
      (.source, try DNNLMemory(sourceDescriptor, engine: engine, buffer: source)),
      (
        .weights,
        try constantMemory(
          weights, dims: [columns, inner], as: primitive.memoryDescriptor(.weights))
      ),
      (
        .destination, try DNNLMemory(destinationDescriptor, engine: engine, buffer: destination)
      ),
    ]
    if let bias, let biasDescriptor {
      arguments.append((.bias, try constantMemory(bias, dims: [columns], as: biasDescriptor)))
    }
    add(primitive, arguments, node: node)
    if gelu { addGelu(from: destination, to: destination, count: rows * columns, node: node) }
  }

  private func lowerBinary(_ node: Node, _ op: BinaryOperator) throws {
    let output = node.outputs[0]
    let outShape = try graph.shape(of: output)
    var first = node.inputs[0]
    var second = node.inputs[1]
    let commutative = op == .add || op == .mul
    func fullShape(_ id: ValueID) throws -> Bool {
      try graph.shape(of: id) == outShape
    }
    // oneDNN broadcasts only the second source, and runs in place only over the first.
    var expandFirst = false
    if try !fullShape(first) || (graph.constants[first] != nil && graph.constants[second] == nil) {
      if commutative, try fullShape(second) {
        swap(&first, &second)
      } else {
        // Sub/Div with a broadcast or constant first operand: materialise it at full shape.
        expandFirst = true
      }
    }
    if !expandFirst, commutative, try fullShape(second),
      try pointer(second) == UnsafeRawPointer(pointer(output))
    {
      swap(&first, &second)
    }
    if graph.constants[first] != nil && graph.constants[second] != nil {
      throw UnsupportedNode(reason: "both operands are constant")
    }
    let firstMemory =
      expandFirst
      ? try expanded(first, to: output, label: node.name) : try memory(first)
    var secondDescriptor = try broadcastDescriptor(second, rank: outShape.count)
    let algorithm: DNNLBinaryAlgorithm
    switch op {
    case .add: algorithm = .add
    case .sub: algorithm = .sub
    case .mul: algorithm = .mul
    case .div: algorithm = .div
    }
    var expandedSecond: DNNLMemory?
    var primitive = try fastPrimitive {
      try engine.makeBinary(
        algorithm, source0: firstMemory.descriptor, source1: secondDescriptor,
        destination: descriptor(output), label: node.name)
    }
    if primitive == nil, try !fullShape(second) {
      // oneDNN's JIT binary broadcasts scalars and per-channel operands only; other patterns
      // (e.g. [1, C, 1, W]) are expanded to the full shape first.
      let full = try expanded(second, to: output, label: node.name)
      expandedSecond = full
      secondDescriptor = full.descriptor
      primitive = nil
    }
    let made =
      try primitive
      ?? engine.makeBinary(
        algorithm, source0: firstMemory.descriptor, source1: secondDescriptor,
        destination: descriptor(output), label: node.name)
    let secondMemory: DNNLMemory
    if let expandedSecond {
      secondMemory = expandedSecond
    } else if let constant = graph.constants[second] {
      secondMemory = try constantMemory(
        constant.floatValues, dims: secondDescriptor.dims, as: secondDescriptor)
    } else {
      secondMemory = try DNNLMemory(secondDescriptor, engine: engine, buffer: pointer(second))
    }
    let outputPointer = UnsafeRawPointer(try pointer(output))
    let aliasesSecond =
      try expandedSecond == nil && graph.constants[second] == nil
      && pointer(second) == outputPointer
    if aliasesSecond {
      // Writing over the second source while reading it is not supported; go via scratch.
      let scratchMemory = try DNNLMemory(descriptor(output), engine: engine, buffer: scratch)
      add(
        made,
        [(.source, firstMemory), (.source1, secondMemory), (.destination, scratchMemory)],
        node: node)
      steps.append(.copy(from: scratch, to: try pointer(output), byteCount: try byteCount(output)))
    } else {
      add(
        made,
        [
          (.source, firstMemory), (.source1, secondMemory),
          (.destination, try memory(output)),
        ], node: node)
    }
  }

  /// `value` broadcast to `target`'s shape and layout: a constant expanded at build time, or
  /// an activation expanded by a copy step into a buffer of its own.
  private func expanded(_ value: ValueID, to target: ValueID, label: String) throws -> DNNLMemory {
    let shape = try graph.shape(of: value)
    let targetShape = try graph.shape(of: target)
    let padded = [Int](repeating: 1, count: targetShape.count - shape.count) + shape
    let sourceStrides = engineStrides(shape)
    let paddedStrides = [Int](repeating: 0, count: targetShape.count - shape.count) + sourceStrides
    if let constant = graph.constants[value] {
      // Row-major expansion, then the usual constant reorder into the target's layout.
      let values = constant.floatValues
      var plainStrides = [Int](repeating: 0, count: padded.count)
      var running = 1
      for d in padded.indices.reversed() {
        plainStrides[d] = padded[d] == 1 ? 0 : running
        running *= padded[d]
      }
      var result = [Float](repeating: 0, count: targetShape.reduce(1, *))
      var index = [Int](repeating: 0, count: targetShape.count)
      for k in result.indices {
        var offset = 0
        for d in index.indices { offset += index[d] * plainStrides[d] }
        result[k] = values[offset]
        advance(&index, within: targetShape)
      }
      return try constantMemory(result, dims: targetShape, as: descriptor(target))
    }
    let targetStrides = engineStrides(targetShape)
    let groups = targetShape.indices.map { d in
      (
        input: (0..<targetShape[d]).map { padded[d] == 1 ? 0 : $0 * paddedStrides[d] },
        output: (0..<targetShape[d]).map { $0 * targetStrides[d] }
      )
    }
    let buffer = temporary(try byteCount(target))
    addKernel(
      IndexedCopy(
        groups: Self.innermostLast(groups), elementSize: 4, source: try pointer(value),
        destination: buffer), label: "\(label) (broadcast)")
    let result = try DNNLMemory(descriptor(target), engine: engine, buffer: buffer)
    retained.append(result)
    return result
  }

  /// The descriptor of `value` seen with numpy broadcasting at `rank` (leading 1s).
  private func broadcastDescriptor(_ value: ValueID, rank: Int) throws -> DNNLMemoryDescriptor {
    let shape = try graph.shape(of: value)
    if shape.count == rank { return try descriptor(value) }
    guard shape.count < rank else {
      throw UnsupportedNode(reason: "operand rank above output rank")
    }
    let padded = [Int](repeating: 1, count: rank - shape.count) + shape
    if graph.constants[value] != nil {
      return try DNNLMemoryDescriptor(dims: padded, dataType: .f32, format: Self.layout(padded))
    }
    // A lower-rank activation is stored row-major; leading 1s do not move its bytes.
    return try DNNLMemoryDescriptor(dims: padded, dataType: .f32, format: Self.plainFormat(rank))
  }

  private func lowerActivation(_ node: Node, _ activation: Activation) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    if case .gelu(tanhApproximation: false) = activation, GeluKernel.isEnabled,
      graph.values[output].elementType == .float32, graph.constants[x] == nil
    {
      // Input and output share the engine's layout for their (equal) shape.
      try addGelu(
        from: pointer(x), to: pointer(output), count: graph.shape(of: output).reduce(1, *),
        node: node)
      return
    }
    let data = try descriptor(output)
    var source = try memory(x)
    for (index, function) in eltwise(activation).enumerated() {
      let primitive = try engine.makeEltwise(function, data: data, label: "\(node.name)#\(index)")
      let destination = try memory(output)
      add(primitive, [(.source, source), (.destination, destination)], node: node)
      source = destination
    }
  }

  private func lowerErf(_ node: Node) throws {
    let count = try graph.shape(of: node.outputs[0]).reduce(1, *)
    steps.append(
      .erf(
        try pointer(node.inputs[0]).assumingMemoryBound(to: Float.self),
        try pointer(node.outputs[0]).assumingMemoryBound(to: Float.self), count: count))
  }

  private func lowerSoftmax(_ node: Node, axis: Int, coerceTo2D: Bool) throws {
    let shape = try graph.shape(of: node.inputs[0])
    let resolved = axis < 0 ? axis + shape.count : axis
    let isLastAxis = resolved == shape.count - 1
    if coerceTo2D, !isLastAxis,
      !(shape.count == 4 && resolved == 1 && isPlainEquivalent(shape))
    {
      // Opset < 13 normalises over all axes from `axis` on: a 2D softmax over the row-major
      // bytes.
      let output = node.outputs[0]
      let view = try Self.plainDescriptor(
        [shape[..<resolved].reduce(1, *), shape[resolved...].reduce(1, *)], .f32)
      let primitive = try engine.makeSoftmax(
        source: view, destination: view, axis: 1, label: node.name)
      let destination = try rowMajorTarget(output)
      add(
        primitive,
        [
          (
            .source,
            try DNNLMemory(view, engine: engine, buffer: rowMajor(node.inputs[0], label: node.name))
          ),
          (.destination, try DNNLMemory(view, engine: engine, buffer: destination)),
        ], node: node)
      try finishRowMajor(output, from: destination, label: node.name)
      return
    }
    if let primitive = try fastPrimitive({
      try engine.makeSoftmax(
        source: descriptor(node.inputs[0]), destination: descriptor(node.outputs[0]),
        axis: resolved, label: node.name)
    }) {
      add(
        primitive,
        [(.source, try memory(node.inputs[0])), (.destination, try memory(node.outputs[0]))],
        node: node)
      return
    }
    // oneDNN's JIT softmax wants the axis innermost: reorder into such a layout and back.
    let order = shape.indices.filter { $0 != resolved } + [resolved]
    var strides = [Int](repeating: 1, count: shape.count)
    var running = 1
    for d in order.reversed() {
      strides[d] = running
      running *= shape[d]
    }
    let inner = try DNNLMemoryDescriptor(dims: shape, dataType: .f32, strides: strides)
    let bytes = try byteCount(node.inputs[0])
    let (staged, result) = (temporary(bytes), temporary(bytes))
    try addReorder(
      from: memory(node.inputs[0]), to: DNNLMemory(inner, engine: engine, buffer: staged),
      label: node.name)
    let primitive = try engine.makeSoftmax(
      source: inner, destination: inner, axis: resolved, label: node.name)
    add(
      primitive,
      [
        (.source, try DNNLMemory(inner, engine: engine, buffer: staged)),
        (.destination, try DNNLMemory(inner, engine: engine, buffer: result)),
      ], node: node)
    try addReorder(
      from: DNNLMemory(inner, engine: engine, buffer: result), to: memory(node.outputs[0]),
      label: node.name)
  }

  /// Creates a primitive unless oneDNN would run it on a reference kernel (nil then), so the
  /// caller can choose other layouts.
  private func fastPrimitive(_ make: () throws -> DNNLPrimitive) throws -> DNNLPrimitive? {
    let strict = engine.strict
    engine.strict = false
    defer { engine.strict = strict }
    let primitive = try make()
    return primitive.usesReferenceImplementation ? nil : primitive
  }

  private func lowerBatchNormalization(_ node: Node, epsilon: Float) throws {
    let scale = try constantFloats(node.inputs[1])
    let bias = try constantFloats(node.inputs[2])
    let mean = try constantFloats(node.inputs[3])
    let variance = try constantFloats(node.inputs[4])
    var multiplier = [Float](repeating: 0, count: scale.count)
    var shift = [Float](repeating: 0, count: scale.count)
    for c in scale.indices {
      multiplier[c] = scale[c] / (variance[c] + epsilon).squareRoot()
      shift[c] = bias[c] - mean[c] * multiplier[c]
    }
    try lowerScaleShift(node, scale: multiplier, shift: shift)
  }

  /// `y = x·scale[c] + shift[c]`: a binary multiply with the add fused as a binary post-op.
  private func lowerScaleShift(_ node: Node, scale: [Float], shift: [Float]) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let shape = try graph.shape(of: x)
    guard shape.count >= 2, scale.count == shape[1], shift.count == shape[1] else {
      throw UnsupportedNode(reason: "scale/shift of \(scale.count) for shape \(shape)")
    }
    var channelDims = [Int](repeating: 1, count: shape.count)
    channelDims[1] = shape[1]
    let channel = try DNNLMemoryDescriptor(
      dims: channelDims, dataType: .f32, format: Self.layout(channelDims))
    let primitive = try engine.makeBinary(
      .mul, source0: descriptor(x), source1: channel, destination: descriptor(output),
      attributes: DNNLAttributes(postOps: [.binary(.add, channel)]), label: node.name)
    add(
      primitive,
      [
        (.source, try memory(x)),
        (.source1, try constantMemory(scale, dims: channelDims, as: channel)),
        (.postOpSource1(index: 0), try constantMemory(shift, dims: channelDims, as: channel)),
        (.destination, try memory(output)),
      ], node: node)
  }

  private func lowerPooling(_ node: Node, _ p: Pooling, algorithm: DNNLPooling) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let inShape = try graph.shape(of: x)
    let outShape = try graph.shape(of: output)
    guard (3...4).contains(inShape.count), p.kernelShape.count == inShape.count - 2 else {
      throw UnsupportedNode(reason: "only 1D and 2D pooling is lowered")
    }
    let (left, right) = p.oneDNNPadding(input: inShape, output: outShape)
    let make = {
      try self.engine.makePooling(
        algorithm, source: self.descriptor(x), destination: self.descriptor(output),
        kernel: p.kernelShape, strides: p.strides, paddingLeft: left, paddingRight: right,
        dilations: p.dilations, label: node.name)
    }
    guard algorithm == .max, try fastPrimitive(make) == nil else {
      add(try make(), [(.source, try memory(x)), (.destination, try memory(output))], node: node)
      return
    }
    // Dilated max pooling runs oneDNN's reference kernel: a loop over precomputed taps.
    let inStrides = engineStrides(inShape)
    let outStrides = engineStrides(outShape)
    let spatial = p.kernelShape.count
    var positions = [0]
    var windows: [[Int]] = [[]]
    for d in 0..<spatial {
      var nextPositions: [Int] = []
      var nextWindows: [[Int]] = []
      for (position, window) in zip(positions, windows) {
        for o in 0..<outShape[d + 2] {
          nextPositions.append(position + o * outStrides[d + 2])
          var taps: [Int] = []
          for k in 0..<p.kernelShape[d] {
            let i = o * p.strides[d] - p.pads[d] + k * p.dilations[d]
            let valid = i >= 0 && i < inShape[d + 2]
            if window.isEmpty && d == 0 {
              taps.append(valid ? i * inStrides[d + 2] : -1)
            } else {
              for t in window { taps.append(valid && t >= 0 ? t + i * inStrides[d + 2] : -1) }
            }
          }
          nextWindows.append(taps)
        }
      }
      positions = nextPositions
      windows = nextWindows
    }
    addKernel(
      MaxPoolKernel(
        source: try pointer(x).assumingMemoryBound(to: Float.self),
        destination: try pointer(output).assumingMemoryBound(to: Float.self),
        batch: inShape[0], channels: inShape[1],
        strides: (inStrides[0], inStrides[1], outStrides[0], outStrides[1]),
        positions: positions, taps: windows.flatMap { $0 },
        tapCount: p.kernelShape.reduce(1, *)), label: node.name)
  }

  private func lowerGlobalAverage(_ node: Node) throws {
    let x = node.inputs[0]
    let shape = try graph.shape(of: x)
    guard shape.count == 4 else {
      try lowerReduction(node, axes: Set(2..<shape.count))
      return
    }
    let destination = try DNNLMemoryDescriptor(
      dims: [shape[0], shape[1], 1, 1], dataType: .f32, format: .nhwc)
    let primitive = try engine.makePooling(
      .averageExcludingPadding, source: descriptor(x), destination: destination,
      kernel: [shape[2], shape[3]], strides: [1, 1], paddingLeft: [0, 0], paddingRight: [0, 0],
      label: node.name)
    add(
      primitive,
      [
        (.source, try memory(x)),
        (
          .destination,
          try DNNLMemory(destination, engine: engine, buffer: pointer(node.outputs[0]))
        ),
      ],
      node: node)
  }

  private func lowerReduceMean(_ node: Node, axes: [Int]?) throws {
    let shape = try graph.shape(of: node.inputs[0])
    let normalized = Set((axes ?? []).map { $0 < 0 ? $0 + shape.count : $0 })
    guard shape.count == 4, normalized == [2, 3] else {
      try lowerReduction(node, axes: axes.map { _ in normalized } ?? Set(shape.indices))
      return
    }
    // [N, C, 1, 1] in NHWC and [N, C] share their bytes, so keepDims does not matter.
    try lowerGlobalAverage(node)
  }

  /// Mean over `axes` with oneDNN's reduction primitive; the destination keeps the input's
  /// rank (reduced axes of size 1) and is described with the strides of the output's layout, so
  /// keepDims changes nothing in the bytes.
  private func lowerReduction(_ node: Node, axes: Set<Int>) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let shape = try graph.shape(of: x)
    let outShape = try graph.shape(of: output)
    let outStrides = engineStrides(outShape)
    var dims = shape
    var strides = [Int](repeating: 1, count: shape.count)
    let keepDims = outShape.count == shape.count
    var o = 0
    for d in shape.indices {
      if axes.contains(d) {
        dims[d] = 1
        if keepDims { o += 1 }
        continue
      }
      strides[d] = outStrides[o]
      o += 1
    }
    if keepDims { strides = outStrides }
    let destination = try DNNLMemoryDescriptor(dims: dims, dataType: .f32, strides: strides)
    guard
      let primitive = try fastPrimitive({
        try engine.makeReduction(
          .mean, source: descriptor(x), destination: destination, label: node.name)
      })
    else {
      // A loop over precomputed offsets: kept positions × reduced positions.
      let inStrides = engineStrides(shape)
      var keptInput = [0]
      var keptOutput = [0]
      var reduced = [0]
      for d in shape.indices {
        let extent = shape[d]
        if axes.contains(d) {
          reduced = reduced.flatMap { base in (0..<extent).map { base + $0 * inStrides[d] } }
        } else {
          keptInput = keptInput.flatMap { base in (0..<extent).map { base + $0 * inStrides[d] } }
          keptOutput = keptOutput.flatMap { base in (0..<extent).map { base + $0 * strides[d] } }
        }
      }
      addKernel(
        MeanKernel(
          source: try pointer(x).assumingMemoryBound(to: Float.self),
          destination: try pointer(output).assumingMemoryBound(to: Float.self),
          keptInput: keptInput, keptOutput: keptOutput, reduced: reduced), label: node.name)
      return
    }
    add(
      primitive,
      [
        (.source, try memory(x)),
        (.destination, try DNNLMemory(destination, engine: engine, buffer: pointer(output))),
      ], node: node)
  }

  private func lowerView(_ node: Node) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let inShape = try graph.shape(of: x)
    let outShape = try graph.shape(of: output)
    let source = try pointer(x)
    let destination = try pointer(output)
    if isPlainEquivalent(inShape) && isPlainEquivalent(outShape) {
      if source != UnsafeRawPointer(destination) {
        steps.append(.copy(from: source, to: destination, byteCount: try byteCount(output)))
      }
      return
    }
    // Channels-last on one side: go through the logical row-major order in scratch.
    guard let type = dataType(x) else {
      throw UnsupportedNode(reason: "int64 values are only reshaped in row-major layouts")
    }
    let plainIn = try Self.plainDescriptor(inShape, type)
    let plainOut = try Self.plainDescriptor(outShape, type)
    try addReorder(
      from: memory(x), to: DNNLMemory(plainIn, engine: engine, buffer: scratch), label: node.name)
    try addReorder(
      from: DNNLMemory(plainOut, engine: engine, buffer: scratch), to: memory(output),
      label: node.name)
  }

  // MARK: Partial convolution (FasterNet's PConv)

  /// `Split(x, [p, C-p]) -> Conv(first part) -> Concat(conv, second part)` along channels.
  /// Lowered without materialising the untouched part: the first `p` channels are reordered to
  /// a dense buffer and convolved (a convolution on a strided channel slice would run oneDNN's
  /// reference kernel), then the output is `x` copied whole with the convolved channels
  /// written over its first `p`. A 3×3 same-size convolution directly followed by its concat
  /// may compute differently (see `Lowering`).
  ///
  /// In a FasterNet block `x` is otherwise only the residual operand of the block's last conv,
  /// which accumulates into `x`'s buffer. Then the whole copy is avoided: the concat output
  /// lives in `x`'s buffer (the convolved channels written over its first `p`), the dense copy
  /// of the first `p` channels gets a buffer of its own (the kernel's padded copy), and it is
  /// written back just before the residual conv, once the concat output's readers are done.
  struct PartialConvolution {
    var source: ValueID
    /// The split output the convolution reads (channels `0..<p`).
    var convolved: ValueID
    var convolutionNode: Int
    var convolutionOutput: ValueID
    /// The concat's output.
    var output: ValueID
    var channels: Int
    /// The concat output shares the source's buffer (see above).
    var inPlace: Bool
    var lowering: Lowering

    /// How the convolution computes.
    enum Lowering {
      /// oneDNN's direct convolution on channels-last dense copies.
      case direct
      /// oneDNN's Winograd convolution on channel-blocked dense copies: for a 3×3 same-size
      /// convolution over a multiple of 16 channels (oneDNN's block), 1.6–2× the direct one's
      /// speed (bench/README.md, session 9).
      case winograd
      /// `PartialConvolutionKernel`, for the other 3×3 same-size ones in plans on more than
      /// one thread: the split and the convolution add no steps, and neither the convolved
      /// slice nor the convolution's output has a buffer of its own.
      case kernel
    }

    var usesKernel: Bool { lowering == .kernel }
    /// The convolution's output is complete, and observable, only once the concat has run:
    /// it is read from the concat's first channels.
    var outputLivesInConcat: Bool { lowering != .direct }
  }

  /// Values whose bytes live somewhere other than their planned arena slot.
  private var aliases: [ValueID: UnsafeMutableRawPointer] = [:]
  /// In-place partial convolutions by source, restored before the conv that sums into it.
  private var pendingRestores: [ValueID: PartialConvolution] = [:]

  /// The partial convolutions lowered with the slice trick (their split's second output is
  /// never materialised).
  var partialConvolutions: [PartialConvolution] {
    partialByConcat.values.sorted { $0.convolutionNode < $1.convolutionNode }
  }

  /// Where a non-constant value lives (rank 4 channels-last), for observers; nil for
  /// constants and values without a buffer.
  func activationPointer(_ value: ValueID) -> UnsafeMutableRawPointer? {
    graph.constants[value] == nil ? try? pointer(value) : nil
  }

  private var partialBySplit: [ValueID: PartialConvolution] = [:]
  private var partialByConcat: [ValueID: PartialConvolution] = [:]
  private var partialByConvolutionOutput: [ValueID: PartialConvolution] = [:]
  /// In-place partial convolution kernels by source, for the restore.
  private var partialKernels: [ValueID: PartialConvolutionKernel] = [:]
  /// Dense copies held channel-blocked (`nChw16c`) for a Winograd partial convolution.
  private var channelBlocked: Set<ValueID> = []

  /// Whether partial convolutions over multiples of 16 channels use oneDNN's Winograd
  /// convolution; `IMAGENET_EVAL_WINOGRAD=0` keeps the direct one, for A/B measurements.
  static let usesWinograd = ProcessInfo.processInfo.environment["IMAGENET_EVAL_WINOGRAD"] != "0"

  /// The threads the plan's kernels will share: 1 for a batch shard.
  private var teamThreads: Int { engine.threads ?? OpenMPRuntime.defaultThreadCount ?? 1 }

  private func findPartialConvolutions() {
    // The kernel saves oneDNN's forks and joins; on one thread (e.g. a batch shard) there are
    // none to save, and oneDNN's convolution is the faster one for 10, 20 and 80 channels
    // (bench/README.md, session 8).
    let consumers = graph.consumers()
    let outputs = Set(graph.outputs)
    var lastRead: [ValueID: Int] = [:]
    for (index, node) in graph.nodes.enumerated() { for v in node.inputs { lastRead[v] = index } }
    for (index, split) in graph.nodes.enumerated() {
      guard case .split(let axis, _) = split.op, split.outputs.count == 2,
        let shape = graph.values[split.inputs[0]].shape, shape.count == 4,
        axis == 1 || axis == -3,
        let first = graph.values[split.outputs[0]].shape,
        consumers[split.outputs[0]].count == 1, consumers[split.outputs[1]].count == 1,
        !outputs.contains(split.outputs[0]), !outputs.contains(split.outputs[1])
      else { continue }
      let convolutionIndex = consumers[split.outputs[0]][0]
      let convolution = graph.nodes[convolutionIndex]
      guard case .conv(let c) = convolution.op, c.postOps.isEmpty,
        convolution.inputs[0] == split.outputs[0], convolution.outputs.count == 1,
        consumers[convolution.outputs[0]].count == 1, !outputs.contains(convolution.outputs[0])
      else { continue }
      let concatIndex = consumers[convolution.outputs[0]][0]
      let concat = graph.nodes[concatIndex]
      guard case .concat(let concatAxis) = concat.op, concatAxis == 1 || concatAxis == -3,
        concat.inputs == [convolution.outputs[0], split.outputs[1]],
        graph.values[convolution.outputs[0]].shape == first,
        // The source must still hold its values when the concat runs.
        (lastRead[split.inputs[0]] ?? -1) > concatIndex || outputs.contains(split.inputs[0]),
        index < concatIndex
      else { continue }
      let sameSize3x3 =
        concatIndex == convolutionIndex + 1
        && graph.constants[convolution.inputs[1]]?.floats != nil
        && ((try? graph.shape(of: convolution.inputs[1])).map {
          PartialConvolutionKernel.accepts(c, weightShape: $0)
        } ?? false)
        && [split.inputs[0], convolution.outputs[0]].allSatisfy {
          graph.values[$0].elementType == .float32
        }
      var lowering = PartialConvolution.Lowering.direct
      if sameSize3x3, first[1] % 16 == 0, Self.usesWinograd {
        lowering = .winograd
      } else if sameSize3x3, PartialConvolutionKernel.isEnabled, teamThreads > 1 {
        lowering = .kernel
      }
      var partial = PartialConvolution(
        source: split.inputs[0], convolved: split.outputs[0], convolutionNode: convolutionIndex,
        convolutionOutput: convolution.outputs[0], output: concat.outputs[0],
        channels: first[1], inPlace: false, lowering: lowering)
      let x = split.inputs[0]
      let readers = consumers[x]
      if x != inputValue, !outputs.contains(x), !outputs.contains(concat.outputs[0]),
        readers.count == 2, readers[0] == index, readers[1] > concatIndex,
        graph.nodes[readers[1]].sumOperand == x,
        consumers[concat.outputs[0]].allSatisfy({ $0 < readers[1] }),
        let base = plan.offsets[x], let bytes = plan.sizes[split.outputs[0]]
      {
        partial.inPlace = true
        aliases[concat.outputs[0]] = arena + base
        if !partial.usesKernel { aliases[split.outputs[0]] = temporary(bytes) }
        pendingRestores[x] = partial
      }
      if partial.lowering == .winograd {
        channelBlocked.formUnion([split.outputs[0], convolution.outputs[0]])
      }
      partialBySplit[split.inputs[0]] = partial
      partialByConcat[concat.outputs[0]] = partial
      partialByConvolutionOutput[convolution.outputs[0]] = partial
    }
  }

  private func lowerPartialSplit(_ node: Node, _ partial: PartialConvolution) throws {
    guard !partial.usesKernel else { return }
    let whole = try descriptor(partial.source)
    let part = try whole.submemory(
      dims: try graph.shape(of: partial.convolved), offsets: [0, 0, 0, 0])
    try addReorder(
      from: DNNLMemory(part, engine: engine, buffer: pointer(partial.source)),
      to: memory(partial.convolved), label: node.name)
  }

  private func lowerPartialConcat(_ node: Node, _ partial: PartialConvolution) throws {
    let output = node.outputs[0]
    if !partial.inPlace {
      steps.append(
        .copy(
          from: try pointer(partial.source), to: try pointer(output),
          byteCount: try byteCount(output)))
    }
    if partial.usesKernel {
      let convolution = graph.nodes[partial.convolutionNode]
      guard let weights = graph.constants[convolution.inputs[1]]?.floats else {
        throw UnsupportedNode(reason: "partial convolution weights are not a float constant")
      }
      let shape = try graph.shape(of: partial.source)
      let kernel = PartialConvolutionKernel(
        source: try pointer(partial.source).assumingMemoryBound(to: Float.self),
        destination: try pointer(output).assumingMemoryBound(to: Float.self),
        weights: weights, bias: try convolution.convolutionBias.map(constantFloats),
        geometry: .init(
          images: shape[0], height: shape[2], width: shape[3], totalChannels: shape[1],
          channels: partial.channels))
      addKernel(kernel, label: convolution.name)
      if partial.inPlace { partialKernels[partial.source] = kernel }
      return
    }
    let part = try descriptor(output).submemory(
      dims: try graph.shape(of: partial.convolutionOutput), offsets: [0, 0, 0, 0])
    try addReorder(
      from: memory(partial.convolutionOutput),
      to: DNNLMemory(part, engine: engine, buffer: pointer(output)), label: node.name)
  }

  private func lowerConcat(_ node: Node, axis: Int) throws {
    let output = node.outputs[0]
    let rank = try graph.shape(of: output).count
    let resolved = axis < 0 ? axis + rank : axis
    let sources = try node.inputs.map { try descriptor($0) }
    let primitive = try engine.makeConcat(
      sources: sources, destination: descriptor(output), axis: resolved, label: node.name)
    var arguments: [(DNNLArgument, DNNLMemory)] = []
    for (index, input) in node.inputs.enumerated() {
      arguments.append((.multipleSource(index), try memory(input)))
    }
    arguments.append((.destination, try memory(output)))
    add(primitive, arguments, node: node)
  }

  private func lowerSplit(_ node: Node, axis: Int) throws {
    let x = node.inputs[0]
    let shape = try graph.shape(of: x)
    let resolved = axis < 0 ? axis + shape.count : axis
    var offset = 0
    let whole = try descriptor(x)
    for output in node.outputs {
      let outShape = try graph.shape(of: output)
      var offsets = [Int](repeating: 0, count: shape.count)
      offsets[resolved] = offset
      let part = try whole.submemory(dims: outShape, offsets: offsets)
      try addReorder(
        from: DNNLMemory(part, engine: engine, buffer: pointer(x)), to: memory(output),
        label: node.name)
      offset += outShape[resolved]
    }
  }

  private func lowerSlice(
    _ node: Node, starts: [Int]?, ends: [Int]?, axes: [Int]?, steps sliceSteps: [Int]?
  ) throws {
    let x = node.inputs[0]
    let shape = try graph.shape(of: x)
    let output = node.outputs[0]
    guard let starts, let ends else {
      throw UnsupportedNode(reason: "starts are not constant")
    }
    guard (sliceSteps ?? []).allSatisfy({ $0 == 1 }), dataType(x) != nil else {
      // Strided (or reversed) slices: a copy by per-axis offset tables.
      var first = [Int](repeating: 0, count: shape.count)
      var step = [Int](repeating: 1, count: shape.count)
      for index in starts.indices {
        let rawAxis = axes?[index] ?? index
        let axis = rawAxis < 0 ? rawAxis + shape.count : rawAxis
        let (begin, _, by, _) = try ShapeRules.sliceRange(
          dim: shape[axis], start: starts[index], end: ends[index],
          step: sliceSteps?[index] ?? 1, node)
        first[axis] = begin
        step[axis] = by
      }
      let inStrides = engineStrides(shape)
      try addCopy(node) { d, i in (first[d] + i * step[d]) * inStrides[d] }
      return
    }
    var offsets = [Int](repeating: 0, count: shape.count)
    for (index, start) in starts.enumerated() {
      let rawAxis = axes?[index] ?? index
      let axis = rawAxis < 0 ? rawAxis + shape.count : rawAxis
      let begin = start < 0 ? start + shape[axis] : start
      offsets[axis] = min(max(begin, 0), shape[axis])
    }
    let part = try descriptor(x).submemory(dims: try graph.shape(of: output), offsets: offsets)
    try addReorder(
      from: DNNLMemory(part, engine: engine, buffer: pointer(x)), to: memory(output),
      label: node.name)
  }

  // MARK: Data movement

  private func lowerTranspose(_ node: Node, perm: [Int]?) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let shape = try graph.shape(of: x)
    let perm = perm ?? Array(shape.indices.reversed())
    let inStrides = engineStrides(shape)
    if let type = dataType(x), shape.count >= 1 {
      // A reorder from the input seen with permuted strides; oneDNN's JIT reorders cover most
      // permutations, the rest go to the copy loop below.
      let outShape = try graph.shape(of: output)
      let view = try DNNLMemoryDescriptor(
        dims: outShape, dataType: type, strides: perm.map { inStrides[$0] })
      if let primitive = try? engine.makeReorder(
        from: view, to: descriptor(output), label: node.name),
        !primitive.usesReferenceImplementation
      {
        let source = try DNNLMemory(view, engine: engine, buffer: pointer(x))
        add(primitive, [(.source, source), (.destination, try memory(output))], node: node)
        return
      }
    }
    try addCopy(node) { d, i in i * inStrides[perm[d]] }
  }

  private func lowerPad(_ node: Node, mode: PadMode, pads: [Int]?, value: Float) throws {
    guard let pads else { throw UnsupportedNode(reason: "pads are not constant") }
    let x = node.inputs[0]
    let shape = try graph.shape(of: x)
    let rank = shape.count
    let inStrides = engineStrides(shape)
    if mode == .reflect,
      shape.indices.contains(where: { pads[$0] >= shape[$0] || pads[$0 + rank] >= shape[$0] })
    {
      throw ModelError(
        .invalidNode,
        "node '\(node.name)' (Pad): reflect pads \(pads) must be smaller than the input \(shape)")
    }
    if mode != .constant, shape.contains(0) {
      throw ModelError(
        .invalidNode, "node '\(node.name)' (Pad): \(mode) padding of an empty input \(shape)")
    }
    let fill: UInt64
    switch graph.values[x].elementType {
    case .float32: fill = UInt64(value.bitPattern)
    default: fill = UInt64(bitPattern: CastKernel.truncate(value))
    }
    try addCopy(node, fill: fill) { d, i in
      var j = i - pads[d]
      let n = shape[d]
      if j < 0 || j >= n {
        switch mode {
        case .constant: return -1
        case .edge: j = min(max(j, 0), n - 1)
        case .reflect: j = j < 0 ? -j : 2 * (n - 1) - j
        }
      }
      return j * inStrides[d]
    }
  }

  private func lowerGather(_ node: Node, axis: Int) throws {
    let x = node.inputs[0]
    let indices = node.inputs[1]
    let output = node.outputs[0]
    let shape = try graph.shape(of: x)
    let indexShape = try graph.shape(of: indices)
    let outShape = try graph.shape(of: output)
    let inStrides = engineStrides(shape)
    let outStrides = engineStrides(outShape)
    let dimension = shape[axis]
    let indexCount = indexShape.reduce(1, *)
    // The output offset of each index position, in the indices' logical order.
    var positions = [Int](repeating: 0, count: indexCount)
    var indexOffsets = [Int](repeating: 0, count: indexCount)
    let indexStrides = engineStrides(indexShape)
    var counter = [Int](repeating: 0, count: indexShape.count)
    for j in 0..<indexCount {
      for k in counter.indices {
        positions[j] += counter[k] * outStrides[axis + k]
        indexOffsets[j] += counter[k] * indexStrides[k]
      }
      advance(&counter, within: indexShape)
    }
    var gathered = [Int](repeating: 0, count: indexCount)
    if let constant = graph.constants[indices]?.integers {
      for (j, raw) in constant.enumerated() {
        let i = raw < 0 ? raw + Int64(dimension) : raw
        guard i >= 0, i < Int64(dimension) else {
          throw ModelError(
            .invalidNode,
            "node '\(node.name)' (Gather): index \(raw) is out of range for dimension \(dimension)")
        }
        gathered[j] = Int(i) * inStrides[axis]
      }
    }
    var groups: [(input: [Int], output: [Int])] = []
    for d in 0..<axis {
      groups.append(
        ((0..<shape[d]).map { $0 * inStrides[d] }, (0..<shape[d]).map { $0 * outStrides[d] }))
    }
    let gatherGroup = groups.count
    groups.append((gathered, positions))
    for d in (axis + 1)..<shape.count {
      let o = d - 1 + indexShape.count
      groups.append(
        ((0..<shape[d]).map { $0 * inStrides[d] }, (0..<shape[d]).map { $0 * outStrides[o] }))
    }
    let copy = IndexedCopy(
      groups: groups, elementSize: graph.values[x].elementType.byteCount,
      source: try pointer(x), destination: try pointer(output))
    if graph.constants[indices] != nil {
      addKernel(copy, label: node.name)
      return
    }
    addKernel(
      RuntimeGather(
        copy: copy, group: gatherGroup, indices: try pointer(indices),
        indexType: graph.values[indices].elementType, indexOffsets: indexOffsets,
        dimension: dimension, stride: inStrides[axis], node: node.name), label: node.name)
  }

  private func lowerCast(_ node: Node, to type: ElementType) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    addKernel(
      CastKernel(
        source: try pointer(x), from: graph.values[x].elementType, destination: try pointer(output),
        to: type, count: try graph.shape(of: output).reduce(1, *)), label: node.name)
  }

  /// A copy where output element `i` (per dimension `d`) reads input offset `offset(d, i_d)`
  /// (summed over dimensions; negative: `fill`).
  private func addCopy(
    _ node: Node, fill: UInt64 = 0, offset: (Int, Int) -> Int
  ) throws {
    let output = node.outputs[0]
    let outShape = try graph.shape(of: output)
    let outStrides = engineStrides(outShape)
    let groups = outShape.indices.map { d in
      (
        input: (0..<outShape[d]).map { offset(d, $0) },
        output: (0..<outShape[d]).map { $0 * outStrides[d] }
      )
    }
    addKernel(
      IndexedCopy(
        groups: Self.innermostLast(groups),
        elementSize: graph.values[output].elementType.byteCount, fillBits: fill,
        source: try pointer(node.inputs[0]), destination: try pointer(output)), label: node.name)
  }

  /// Orders per-dimension copy groups so the innermost loop walks the smallest output stride.
  static func innermostLast(_ groups: [(input: [Int], output: [Int])]) -> [(
    input: [Int], output: [Int]
  )] {
    func stride(_ g: (input: [Int], output: [Int])) -> Int {
      g.output.count > 1 ? g.output[1] - g.output[0] : Int.max
    }
    return groups.enumerated().sorted {
      stride($0.element) != stride($1.element)
        ? stride($0.element) > stride($1.element) : $0.offset < $1.offset
    }.map(\.element)
  }

  private func addKernel(_ kernel: FloatKernel, label: String) {
    retained.append(kernel)
    implementations.append((label, kernel.implementation))
    steps.append(.kernel(kernel))
  }

  /// A buffer that lives as long as the engine, for values that need a second layout.
  private func temporary(_ byteCount: Int) -> UnsafeMutableRawPointer {
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 64), alignment: 64)
    buffer.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 64))
    ownedBuffers.append(buffer)
    return buffer
  }

  /// `value`'s elements in row-major order: its own buffer when the engine's layout already is,
  /// otherwise a temporary that a reorder step fills.
  private func rowMajor(_ value: ValueID, label: String) throws -> UnsafeMutableRawPointer {
    let shape = try graph.shape(of: value)
    if let constant = graph.constants[value] {
      let result = try constantMemory(
        constant.floatValues, dims: shape.isEmpty ? [1] : shape,
        as: Self.plainDescriptor(shape, .f32))
      guard let buffer = result.buffer else {
        throw UnsupportedNode(reason: "constant '\(graph.values[value].name)' has no buffer")
      }
      return buffer
    }
    if isPlainEquivalent(shape) { return try pointer(value) }
    let buffer = temporary(try byteCount(value))
    try addReorder(
      from: memory(value),
      to: DNNLMemory(Self.plainDescriptor(shape, .f32), engine: engine, buffer: buffer),
      label: label)
    return buffer
  }

  /// Where a primitive writes `value` row-major; `finishRowMajor` then moves it into place.
  private func rowMajorTarget(_ value: ValueID) throws -> UnsafeMutableRawPointer {
    try isPlainEquivalent(graph.shape(of: value))
      ? pointer(value) : temporary(try byteCount(value))
  }

  private func finishRowMajor(
    _ value: ValueID, from buffer: UnsafeMutableRawPointer, label: String
  ) throws {
    guard try buffer != pointer(value) else { return }
    try addReorder(
      from: DNNLMemory(
        Self.plainDescriptor(graph.shape(of: value), .f32), engine: engine, buffer: buffer),
      to: memory(value), label: label)
  }

  // MARK: Post-ops and activations

  private func eltwise(_ activation: Activation) -> [DNNLEltwise] {
    switch activation {
    case .relu: return [.relu()]
    case .leakyRelu(let alpha): return [.relu(slope: alpha)]
    case .clip(let lower, let upper):
      return [
        .clip(
          lower: max(lower, -.greatestFiniteMagnitude), upper: min(upper, .greatestFiniteMagnitude))
      ]
    case .sigmoid: return [.sigmoid]
    case .hardSigmoid(let alpha, let beta):
      return [.linear(scale: alpha, shift: beta), .clip(lower: 0, upper: 1)]
    case .hardSwish: return [.hardswish]
    case .tanh: return [.tanh]
    case .gelu(let tanhApproximation): return [tanhApproximation ? .geluTanh : .geluErf]
    }
  }

  /// `chain` without its trailing exact GELU when `GeluKernel` runs it instead, and whether it
  /// was removed (the caller then adds the kernel over the primitive's output). GELU followed
  /// by other post-ops stays fused.
  private func splittingGelu(_ chain: [PostOp]) -> (chain: [PostOp], gelu: Bool) {
    guard GeluKernel.isEnabled, case .activation(.gelu(tanhApproximation: false)) = chain.last
    else { return (chain, false) }
    return (Array(chain.dropLast()), true)
  }

  /// GELU of `count` dense floats from `source` into `destination`.
  private func addGelu(
    from source: UnsafeMutableRawPointer, to destination: UnsafeMutableRawPointer, count: Int,
    node: Node
  ) {
    addKernel(
      GeluKernel(
        source: source.assumingMemoryBound(to: Float.self),
        destination: destination.assumingMemoryBound(to: Float.self), count: count),
      label: node.name)
  }

  private func postOps(_ chain: [PostOp]) throws -> [DNNLPostOp] {
    chain.flatMap { op -> [DNNLPostOp] in
      switch op {
      case .activation(let activation): return eltwise(activation).map { .eltwise($0) }
      case .sum: return [.sum()]
      }
    }
  }

  // MARK: Buffers and descriptors

  static func plainFormat(_ rank: Int) -> DNNLFormat {
    switch rank {
    case 1: return .a
    case 2: return .ab
    case 3: return .abc
    case 4: return .abcd
    default: return .abcde
    }
  }

  /// A row-major descriptor of any rank (a scalar is one element).
  static func plainDescriptor(_ shape: [Int], _ type: DNNLDataType) throws
    -> DNNLMemoryDescriptor
  {
    let dims = shape.isEmpty ? [1] : shape
    if dims.count <= 5 {
      return try DNNLMemoryDescriptor(dims: dims, dataType: type, format: plainFormat(dims.count))
    }
    var strides = [Int](repeating: 1, count: dims.count)
    for d in stride(from: dims.count - 2, through: 0, by: -1) {
      strides[d] = strides[d + 1] * dims[d + 1]
    }
    return try DNNLMemoryDescriptor(dims: dims, dataType: type, strides: strides)
  }

  /// The oneDNN element type of `value`, nil for int64 (which oneDNN does not have).
  private func dataType(_ value: ValueID) -> DNNLDataType? {
    switch graph.values[value].elementType {
    case .float32: return .f32
    case .int32: return .s32
    case .int8: return .s8
    case .uint8: return .u8
    case .int64: return nil
    }
  }

  /// Rank-4 values are channels-last; everything else is row-major.
  static func layout(_ shape: [Int]) -> DNNLFormat {
    shape.count == 4 ? .nhwc : plainFormat(shape.count)
  }

  /// True when the engine's layout of `shape` has the same bytes as row-major.
  private func isPlainEquivalent(_ shape: [Int]) -> Bool {
    shape.count != 4 || shape[1] == 1 || (shape[2] == 1 && shape[3] == 1)
  }

  private func descriptor(_ value: ValueID) throws -> DNNLMemoryDescriptor {
    let shape = try graph.shape(of: value)
    guard let type = dataType(value) else {
      throw UnsupportedNode(
        reason: "value '\(graph.values[value].name)' is \(graph.values[value].elementType)")
    }
    if shape.count == 4 {
      return try DNNLMemoryDescriptor(
        dims: shape, dataType: type, format: channelBlocked.contains(value) ? .nChw16c : .nhwc)
    }
    return try Self.plainDescriptor(shape, type)
  }

  private func byteCount(_ value: ValueID) throws -> Int {
    try graph.shape(of: value).reduce(1, *) * graph.values[value].elementType.byteCount
  }

  private func pointer(_ value: ValueID) throws -> UnsafeMutableRawPointer {
    if let alias = aliases[value] { return alias }
    if value == inputValue { return inputBuffer }
    if let offset = plan.offsets[value] { return arena + offset }
    if graph.constants[value] != nil, let buffer = try constantMemoryFor(value).buffer {
      return buffer
    }
    throw UnsupportedNode(reason: "value '\(graph.values[value].name)' has no buffer")
  }

  private func memory(_ value: ValueID) throws -> DNNLMemory {
    if graph.constants[value] != nil { return try constantMemoryFor(value) }
    let result = try DNNLMemory(descriptor(value), engine: engine, buffer: pointer(value))
    retained.append(result)
    return result
  }

  private func constantMemoryFor(_ value: ValueID) throws -> DNNLMemory {
    if let existing = constantMemories[value] { return existing }
    guard let tensor = graph.constants[value] else {
      throw UnsupportedNode(reason: "value '\(graph.values[value].name)' is not constant")
    }
    let result = try constantMemory(tensor.floatValues, dims: tensor.shape, as: descriptor(value))
    constantMemories[value] = result
    return result
  }

  /// A library-owned memory in `target`'s layout filled from row-major `values` of `dims`.
  private func constantMemory(
    _ values: [Float], dims: [Int], as target: DNNLMemoryDescriptor?
  ) throws -> DNNLMemory {
    guard let target else { throw UnsupportedNode(reason: "primitive reported no weights layout") }
    var values = values
    let plain = try DNNLMemoryDescriptor(
      dims: dims, dataType: .f32, format: Self.plainFormat(dims.count))
    let result = try DNNLMemory(allocating: target, engine: engine)
    try values.withUnsafeMutableBytes { bytes in
      let source = try DNNLMemory(plain, engine: engine, buffer: bytes.baseAddress)
      try engine.makeReorder(from: plain, to: target, label: "constant").execute([
        (.source, source), (.destination, result),
      ])
    }
    retained.append(result)
    return result
  }

  private func addReorder(from source: DNNLMemory, to destination: DNNLMemory, label: String) throws
  {
    let primitive = try engine.makeReorder(
      from: source.descriptor, to: destination.descriptor, label: label)
    retained.append(source)
    retained.append(destination)
    retained.append(primitive)
    implementations.append((label, primitive.implementation))
    steps.append(.primitive(primitive.bind([(.source, source), (.destination, destination)])))
  }

  private func add(
    _ primitive: DNNLPrimitive, _ arguments: [(DNNLArgument, DNNLMemory)], node: Node
  ) {
    retained.append(primitive)
    for (_, memory) in arguments { retained.append(memory) }
    implementations.append((node.name, primitive.implementation))
    steps.append(.primitive(primitive.bind(arguments)))
  }

  private func constantFloats(_ value: ValueID) throws -> [Float] {
    guard let tensor = graph.constants[value] else {
      throw UnsupportedNode(reason: "'\(graph.values[value].name)' is not a constant")
    }
    return tensor.floatValues
  }
}
