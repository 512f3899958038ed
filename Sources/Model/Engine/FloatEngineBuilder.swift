import Foundation

/// Lowers a prepared graph onto oneDNN primitives for `FloatEngine`.
final class FloatEngineBuilder {
  let graph: Graph
  let engine: DNNLEngine
  let plan: MemoryPlan
  let inputShape: [Int]
  let classCount: Int

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

  init(graph: Graph, engine: DNNLEngine) throws {
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
    guard graph.values[inputValue].elementType == .float32, logits.count >= 2,
      logits.first == input.first, graph.values[output].elementType == .float32
    else {
      throw ModelError(
        .invalidGraph,
        "float engine: expected float32 input [batch, …] and logits [batch, classes], got \(input) -> \(logits)"
      )
    }
    inputShape = input
    classCount = logits.dropFirst().reduce(1, *)
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
      DNNLMemoryDescriptor(dims: input, dataType: .f32, format: Self.plainFormat(input.count)),
      engine: engine, buffer: nil)
    outputMemory = try DNNLMemory(
      DNNLMemoryDescriptor(dims: logits, dataType: .f32, format: Self.plainFormat(logits.count)),
      engine: engine, buffer: nil)
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
    for id in node.outputs where graph.values[id].elementType != .float32 {
      throw UnsupportedNode(
        reason: "output '\(graph.values[id].name)' is \(graph.values[id].elementType)")
    }
    switch node.op {
    case .conv(let attributes): try lowerConvolution(node, attributes)
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
    default:
      throw UnsupportedNode(reason: "no oneDNN lowering for this op")
    }
  }

  private func lowerConvolution(_ node: Node, _ c: Convolution) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let xShape = try graph.shape(of: x)
    guard xShape.count == 4, c.kernelShape.count == 2 else {
      throw UnsupportedNode(reason: "only 2D convolutions are lowered")
    }
    guard let weights = graph.constants[node.inputs[1]]?.floats else {
      throw UnsupportedNode(reason: "weights are not a float constant")
    }
    let weightShape = try graph.shape(of: node.inputs[1])
    let groups = c.group
    let weightDims =
      groups == 1
      ? weightShape
      : [groups, weightShape[0] / groups] + weightShape.dropFirst()
    var biasDescriptor: DNNLMemoryDescriptor?
    var biasValues: [Float] = []
    if let bias = node.convolutionBias {
      biasValues = try constantFloats(bias)
      biasDescriptor = try DNNLMemoryDescriptor(
        dims: [biasValues.count], dataType: .f32, format: .a)
    }
    if let operand = node.sumOperand { try placeSumOperand(operand, into: output) }
    let primitive = try engine.makeConvolution(
      source: descriptor(x),
      weights: DNNLMemoryDescriptor(dims: weightDims, dataType: .f32, format: .any),
      bias: biasDescriptor, destination: descriptor(output), strides: c.strides,
      dilations: c.dilations, paddingLeft: Array(c.pads[0..<2]), paddingRight: Array(c.pads[2..<4]),
      attributes: DNNLAttributes(postOps: try postOps(c.postOps)), label: node.name)
    var arguments: [(DNNLArgument, DNNLMemory)] = [
      (.source, try memory(x)),
      (
        .weights,
        try constantMemory(weights, dims: weightDims, as: primitive.memoryDescriptor(.weights))
      ),
      (.destination, try memory(output)),
    ]
    if let biasDescriptor {
      arguments.append(
        (.bias, try constantMemory(biasValues, dims: biasDescriptor.dims, as: biasDescriptor)))
    }
    add(primitive, arguments, node: node)
  }

  /// A fused residual sum accumulates into the output buffer, so the operand must be there
  /// first; the memory plan usually put it there already.
  private func placeSumOperand(_ operand: ValueID, into output: ValueID) throws {
    let source = try pointer(operand)
    let destination = try pointer(output)
    if source != UnsafeRawPointer(destination) {
      steps.append(.copy(from: source, to: destination, byteCount: try byteCount(output)))
    }
  }

  private func lowerGemm(_ node: Node, _ g: Gemm) throws {
    let a = node.inputs[0]
    let aShape = try graph.shape(of: a)
    guard !g.transA, aShape.count == 2 else {
      throw UnsupportedNode(reason: "transA or a non-2D A is not lowered")
    }
    guard let b = graph.constants[node.inputs[1]]?.floats else {
      throw UnsupportedNode(reason: "B is not a float constant")
    }
    let bShape = try graph.shape(of: node.inputs[1])
    let (k, n) = g.transB ? (bShape[1], bShape[0]) : (bShape[0], bShape[1])
    // Inner product wants weights as [N, K]; alpha folds into them.
    var weights = [Float](repeating: 0, count: n * k)
    for row in 0..<n {
      for column in 0..<k {
        weights[row * k + column] = g.alpha * (g.transB ? b[row * k + column] : b[column * n + row])
      }
    }
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
      node, source: a, rows: aShape[0], inner: k, columns: n, weights: weights, bias: bias,
      postOps: g.postOps)
  }

  private func lowerMatMul(_ node: Node) throws {
    let a = node.inputs[0]
    let aShape = try graph.shape(of: a)
    guard let b = graph.constants[node.inputs[1]]?.floats,
      try graph.shape(of: node.inputs[1]).count == 2
    else { throw UnsupportedNode(reason: "only MatMul by a constant 2D matrix is lowered") }
    guard aShape.count != 4 || isPlainEquivalent(aShape) else {
      throw UnsupportedNode(reason: "MatMul on a 4D activation is not lowered")
    }
    let bShape = try graph.shape(of: node.inputs[1])
    let (k, n) = (bShape[0], bShape[1])
    var weights = [Float](repeating: 0, count: n * k)
    for row in 0..<n { for column in 0..<k { weights[row * k + column] = b[column * n + row] } }
    try addInnerProduct(
      node, source: a, rows: aShape.dropLast().reduce(1, *), inner: k, columns: n, weights: weights,
      bias: nil, postOps: [])
  }

  private func addInnerProduct(
    _ node: Node, source: ValueID, rows: Int, inner: Int, columns: Int, weights: [Float],
    bias: [Float]?, postOps chain: [PostOp]
  ) throws {
    let output = node.outputs[0]
    let sourceDescriptor = try DNNLMemoryDescriptor(
      dims: [rows, inner], dataType: .f32, format: .ab)
    let destinationDescriptor = try DNNLMemoryDescriptor(
      dims: [rows, columns], dataType: .f32, format: .ab)
    let biasDescriptor = try bias.map { _ in
      try DNNLMemoryDescriptor(dims: [columns], dataType: .f32, format: .a)
    }
    let primitive = try engine.makeInnerProduct(
      source: sourceDescriptor,
      weights: DNNLMemoryDescriptor(dims: [columns, inner], dataType: .f32, format: .any),
      bias: biasDescriptor, destination: destinationDescriptor,
      attributes: DNNLAttributes(postOps: try postOps(chain)), label: node.name)
    var arguments: [(DNNLArgument, DNNLMemory)] = [
      (.source, try DNNLMemory(sourceDescriptor, engine: engine, buffer: pointer(source))),
      (
        .weights,
        try constantMemory(
          weights, dims: [columns, inner], as: primitive.memoryDescriptor(.weights))
      ),
      (
        .destination, try DNNLMemory(destinationDescriptor, engine: engine, buffer: pointer(output))
      ),
    ]
    if let bias, let biasDescriptor {
      arguments.append((.bias, try constantMemory(bias, dims: [columns], as: biasDescriptor)))
    }
    add(primitive, arguments, node: node)
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
    if try !fullShape(first) || (graph.constants[first] != nil && graph.constants[second] == nil) {
      guard commutative, try fullShape(second) else {
        throw UnsupportedNode(reason: "the first operand is broadcast in a non-commutative op")
      }
      swap(&first, &second)
    }
    if commutative, try fullShape(second), try pointer(second) == UnsafeRawPointer(pointer(output))
    {
      swap(&first, &second)
    }
    if graph.constants[first] != nil {
      throw UnsupportedNode(reason: "both operands are constant")
    }
    let secondDescriptor = try broadcastDescriptor(second, rank: outShape.count)
    let algorithm: DNNLBinaryAlgorithm
    switch op {
    case .add: algorithm = .add
    case .sub: algorithm = .sub
    case .mul: algorithm = .mul
    case .div: algorithm = .div
    }
    let primitive = try engine.makeBinary(
      algorithm, source0: descriptor(first), source1: secondDescriptor,
      destination: descriptor(output), label: node.name)
    let secondMemory: DNNLMemory
    if let constant = graph.constants[second] {
      secondMemory = try constantMemory(
        constant.floatValues, dims: secondDescriptor.dims, as: secondDescriptor)
    } else {
      secondMemory = try DNNLMemory(secondDescriptor, engine: engine, buffer: pointer(second))
    }
    let outputPointer = UnsafeRawPointer(try pointer(output))
    let aliasesSecond = try graph.constants[second] == nil && pointer(second) == outputPointer
    if aliasesSecond {
      // Writing over the second source while reading it is not supported; go via scratch.
      let scratchMemory = try DNNLMemory(descriptor(output), engine: engine, buffer: scratch)
      add(
        primitive,
        [(.source, try memory(first)), (.source1, secondMemory), (.destination, scratchMemory)],
        node: node)
      steps.append(.copy(from: scratch, to: try pointer(output), byteCount: try byteCount(output)))
    } else {
      add(
        primitive,
        [
          (.source, try memory(first)), (.source1, secondMemory),
          (.destination, try memory(output)),
        ], node: node)
    }
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
    guard
      !coerceTo2D || isLastAxis || (shape.count == 4 && resolved == 1 && isPlainEquivalent(shape))
    else { throw UnsupportedNode(reason: "opset<13 softmax over several axes is not lowered") }
    let primitive = try engine.makeSoftmax(
      source: descriptor(node.inputs[0]), destination: descriptor(node.outputs[0]), axis: resolved,
      label: node.name)
    add(
      primitive,
      [(.source, try memory(node.inputs[0])), (.destination, try memory(node.outputs[0]))],
      node: node)
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
    guard inShape.count == 4, p.kernelShape.count == 2 else {
      throw UnsupportedNode(reason: "only 2D pooling is lowered")
    }
    let (left, right) = p.oneDNNPadding(input: inShape, output: outShape)
    let primitive = try engine.makePooling(
      algorithm, source: descriptor(x), destination: descriptor(output), kernel: p.kernelShape,
      strides: p.strides, paddingLeft: left, paddingRight: right, dilations: p.dilations,
      label: node.name)
    add(primitive, [(.source, try memory(x)), (.destination, try memory(output))], node: node)
  }

  private func lowerGlobalAverage(_ node: Node) throws {
    let x = node.inputs[0]
    let shape = try graph.shape(of: x)
    guard shape.count == 4 else { throw UnsupportedNode(reason: "only 4D inputs are lowered") }
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
      throw UnsupportedNode(
        reason: "only ReduceMean over the spatial axes of a 4D tensor is lowered")
    }
    // [N, C, 1, 1] in NHWC and [N, C] share their bytes, so keepDims does not matter.
    try lowerGlobalAverage(node)
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
    let plainIn = try DNNLMemoryDescriptor(
      dims: inShape, dataType: .f32, format: Self.plainFormat(inShape.count))
    let plainOut = try DNNLMemoryDescriptor(
      dims: outShape, dataType: .f32, format: Self.plainFormat(outShape.count))
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
  /// written over its first `p`.
  struct PartialConvolution {
    var source: ValueID
    /// The split output the convolution reads (channels `0..<p`).
    var convolved: ValueID
    var convolutionOutput: ValueID
    var channels: Int
  }

  /// The partial convolutions lowered with the slice trick (their split's second output is
  /// never materialised).
  var partialConvolutions: [PartialConvolution] { Array(partialByConcat.values) }

  /// Where a non-constant value lives (rank 4 channels-last), for observers; nil for
  /// constants and values without a buffer.
  func activationPointer(_ value: ValueID) -> UnsafeMutableRawPointer? {
    graph.constants[value] == nil ? try? pointer(value) : nil
  }

  /// How many partial convolutions were lowered with the slice trick.
  var partialConvolutionCount: Int { partialByConcat.count }
  private var partialBySplit: [ValueID: PartialConvolution] = [:]
  private var partialByConcat: [ValueID: PartialConvolution] = [:]

  private func findPartialConvolutions() {
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
      let convolution = graph.nodes[consumers[split.outputs[0]][0]]
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
      let partial = PartialConvolution(
        source: split.inputs[0], convolved: split.outputs[0],
        convolutionOutput: convolution.outputs[0], channels: first[1])
      partialBySplit[split.inputs[0]] = partial
      partialByConcat[concat.outputs[0]] = partial
    }
  }

  private func lowerPartialSplit(_ node: Node, _ partial: PartialConvolution) throws {
    let whole = try descriptor(partial.source)
    let part = try whole.submemory(
      dims: try graph.shape(of: partial.convolved), offsets: [0, 0, 0, 0])
    try addReorder(
      from: DNNLMemory(part, engine: engine, buffer: pointer(partial.source)),
      to: memory(partial.convolved), label: node.name)
  }

  private func lowerPartialConcat(_ node: Node, _ partial: PartialConvolution) throws {
    let output = node.outputs[0]
    steps.append(
      .copy(
        from: try pointer(partial.source), to: try pointer(output), byteCount: try byteCount(output)
      ))
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
    guard let starts else { throw UnsupportedNode(reason: "starts are not constant") }
    guard (sliceSteps ?? []).allSatisfy({ $0 == 1 }) else {
      throw UnsupportedNode(reason: "strided slices are not lowered")
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
    guard (1...5).contains(shape.count) else {
      throw UnsupportedNode(reason: "value '\(graph.values[value].name)' has rank \(shape.count)")
    }
    return try DNNLMemoryDescriptor(dims: shape, dataType: .f32, format: Self.layout(shape))
  }

  private func byteCount(_ value: ValueID) throws -> Int {
    try graph.shape(of: value).reduce(1, *) * 4
  }

  private func pointer(_ value: ValueID) throws -> UnsafeMutableRawPointer {
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
