import Foundation

/// Lowers a prepared graph onto int8 kernels for `Int8Engine`.
final class Int8Lowering {
  let graph: Graph
  let params: [ValueID: QuantParams]
  let engine: DNNLEngine
  let arena: UnsafeMutableRawPointer
  let plan: MemoryPlan
  let scratch: UnsafeMutableRawPointer
  let inputValue: ValueID
  let inputCodes: UnsafeMutableRawPointer
  let outputValue: ValueID
  let logits: UnsafeMutablePointer<Float>
  let scheme: QuantizationScheme
  let floatNodes: Set<String>
  /// Weights, biases and output codes taken from a quantized model (nil when calibrated).
  let explicit: ExplicitQuantization?

  private(set) var steps: [Int8Step] = []
  private(set) var retained: [AnyObject] = []
  private(set) var fallbackNodes: [String] = []
  private(set) var nodeIsQuantized: [Bool]
  private(set) var weightRanges: [Int: (Float, Float)] = [:]
  private(set) var logitsAreFloat = false
  /// Per quantised Conv/Gemm (node index): the integer weights and bias its kernel runs with.
  private(set) var nodeWeights: [Int: NodeWeights] = [:]
  /// Per int8 value that convolutions read as sign-shifted uint8 codes (`Int8SignShift`): its
  /// one shift, run before its first such reader and shared by the later ones — the memory
  /// plan keeps a value's codes unchanged until its last reader, so one shifted copy serves
  /// them all (parallel branches reading the same signed codes).
  private(set) var signShifts: [ValueID: Int8SignShift] = [:]
  /// Convolutions reading sign-shifted codes (`signShifts.count` shifts serve them).
  private(set) var signShiftReaders = 0

  /// The integer operands of a quantised Conv or Gemm, kept for the QDQ export.
  struct NodeWeights {
    /// int8 codes: OHWI for a convolution, `[n, k]` (alpha folded in) for a Gemm.
    var codes: [Int8]
    /// The codes' dimensions in that layout.
    var shape: [Int]
    /// The weights' scales (one per output channel, or one), zero points 0.
    var params: QuantParams
    /// The bias in accumulator units, `round(bias / (inputScale · weightScale[oc]))`.
    var bias: [Int32]?
    /// The input activation scale the bias was quantised with.
    var inputScale: Float
  }

  /// Per value: the index of the last node reading it.
  private var lastRead: [ValueID: Int] = [:]
  /// Split outputs left unwritten because their Concat reads the split's input directly.
  private var forwarded: [ValueID: ForwardedSlice] = [:]
  /// int8 values (zero point 0) written by a convolution whose fused clamp has a lower bound
  /// of 0 or more, so every code is in 0...127 (see `kernelInputType`).
  private var nonNegativeCodes = Set<ValueID>()

  /// Why a node runs in float instead (not an error).
  private struct Fallback: Error { var reason: String }

  init(
    graph: Graph, params: [ValueID: QuantParams], engine: DNNLEngine,
    arena: UnsafeMutableRawPointer, plan: MemoryPlan, scratch: UnsafeMutableRawPointer,
    inputValue: ValueID, inputCodes: UnsafeMutableRawPointer, outputValue: ValueID,
    logits: UnsafeMutablePointer<Float>, scheme: QuantizationScheme, floatNodes: Set<String>,
    explicit: ExplicitQuantization? = nil
  ) {
    self.explicit = explicit
    self.graph = graph
    self.params = params
    self.engine = engine
    self.arena = arena
    self.plan = plan
    self.scratch = scratch
    self.inputValue = inputValue
    self.inputCodes = inputCodes
    self.outputValue = outputValue
    self.logits = logits
    self.scheme = scheme
    self.floatNodes = floatNodes
    nodeIsQuantized = [Bool](repeating: false, count: graph.nodes.count)
  }

  /// Ops whose output keeps the input's codes and parameters (reshapes and max pooling, which
  /// commute with any monotonic quantisation).
  static func keepsInputCodes(_ op: Op) -> Bool {
    switch op {
    case .flatten, .reshape, .squeeze, .unsqueeze, .identity, .maxPool: true
    default: false
    }
  }

  func lower() throws {
    let consumers = graph.consumers()
    // A quantized model's elementwise float islands run as code tables (Int8Elementwise).
    var islandAt: [Int: Int8ElementwiseIsland] = [:]
    var insideIsland = Set<Int>()
    if explicit != nil {
      for island in Int8ElementwiseIsland.find(in: graph, params: params)
      where !island.nodes.contains(where: { floatNodes.contains(graph.nodes[$0].name) }) {
        islandAt[island.nodes[0]] = island
        insideIsland.formUnion(island.nodes.dropFirst())
      }
    }
    for (index, node) in graph.nodes.enumerated() {
      for input in node.inputs { lastRead[input] = index }
    }
    for (index, node) in graph.nodes.enumerated() {
      let before = steps.count
      var quantized = false
      if let island = islandAt[index] {
        try lowerIsland(island)
        quantized = true
      } else if insideIsland.contains(index) {
        quantized = true
      } else if floatNodes.contains(node.name) {
        try materializeForwarded(node)
        try lowerFallback(index, node)
        fallbackNodes.append(node.name)
      } else {
        do {
          quantized = try lowerQuantized(index, node, consumers: consumers)
        } catch let fallback as Fallback {
          _ = fallback
          steps.removeLast(steps.count - before)
          try materializeForwarded(node)
          try lowerFallback(index, node)
          fallbackNodes.append(node.name)
        }
      }
      nodeIsQuantized[index] = quantized
      if steps.count > before {
        steps[steps.count - 1].completesNode = index
      } else {
        steps.append(Int8Step(work: .swift({}), completesNode: index))
      }
    }
  }

  /// Returns true when the node runs an integer kernel (false for pure data movement).
  private func lowerQuantized(_ index: Int, _ node: Node, consumers: [[Int]]) throws -> Bool {
    for output in node.outputs where graph.values[output].elementType != .float32 {
      throw Fallback(reason: "non-float output")
    }
    // int16 codes (Int8Settings.int16Nodes): convolutions run the exact scalar integer kernel
    // (see `lowerConvolution`); anything else runs in float on the dequantised int16 grid.
    var isConvolution = false
    if case .conv = node.op { isConvolution = true }
    if !isConvolution,
      (node.inputs + node.outputs).contains(where: { params[$0]?.type == .int16 })
    {
      throw Fallback(reason: "int16 activations")
    }
    switch node.op {
    case .conv(let c):
      try lowerConvolution(index, node, c, consumers: consumers)
      return true
    case .gemm(let g):
      try lowerGemm(index, node, g, consumers: consumers)
      return true
    case .binary(let op) where explicit != nil:
      // A quantized model's Add/Mul: the arithmetic its format defines (onnxruntime's).
      try lowerBinary(node, op)
      return true
    case .binary(.add):
      // A calibrated engine's residual Add: onnxruntime's QLinearAdd on the codes.
      try lowerAdd(node)
      return true
    case .globalAveragePool:
      try lowerGlobalAverage(node)
      return true
    case .reduceMean(let axes, _):
      let shape = try graph.shape(of: node.inputs[0])
      let normalized = Set((axes ?? []).map { $0 < 0 ? $0 + shape.count : $0 })
      guard shape.count == 4, normalized == [2, 3] else {
        throw Fallback(reason: "ReduceMean not over H, W")
      }
      try lowerGlobalAverage(node)
      return true
    case .maxPool(let p):
      try lowerMaxPool(node, p)
      return true
    case .activation(let a):
      try lowerLookup(node, a)
      return true
    case .flatten, .reshape, .squeeze, .unsqueeze, .identity:
      try lowerView(node)
      return false
    case .split(1, _), .concat(1):
      try lowerChannelSlices(node, consumers: consumers)
      return true
    default:
      throw Fallback(reason: "no int8 kernel")
    }
  }

  // MARK: Convolution and Gemm

  /// The fused chain as (residual?, clamp): `[sum?, clamp?]`, else a fallback.
  private func fusedChain(_ chain: [PostOp]) throws -> (sum: Bool, activation: FusedActivation) {
    var sum = false
    var activation = FusedActivation.none
    for (position, op) in chain.enumerated() {
      switch op {
      case .sum where position == 0:
        sum = true
      case .activation(.relu) where activation == .none:
        activation = .relu
      case .activation(.clip(let lower, let upper)) where activation == .none:
        activation = lower == 0 && upper == 6 ? .relu6 : .clip(lower: lower, upper: upper)
      default:
        throw Fallback(reason: "post-op chain \(chain) is not a residual sum and a clamp")
      }
    }
    return (sum, activation)
  }

  private func quantizedWeights(
    _ node: Node, _ values: [Float], outputChannels: Int
  ) throws -> (codes: [Int8], params: QuantParams) {
    if let weights = explicit?.weights[node.name] { return weights }
    let tensor = graph.values[node.inputs[1]].name
    if let bad = values.firstIndex(where: { !$0.isFinite }) {
      throw ModelError(
        .invalidGraph,
        "int8 engine: weight tensor '\(tensor)' of node '\(node.name)' holds \(values[bad]) at element \(bad)"
      )
    }
    let low = values.min() ?? 0
    let high = values.max() ?? 0
    if let index = graph.nodes.firstIndex(where: { $0.name == node.name }) {
      weightRanges[index] = (low, high)
    }
    return try Quantizer.quantizeWeights(
      values, outputChannels: outputChannels, granularity: scheme.weights)
  }

  private func quantizedBias(_ node: Node, _ bias: [Float], inputScale: Float, weights: QuantParams)
    throws -> [Int32]
  {
    if let codes = explicit?.biases[node.name] { return codes }
    if let bad = bias.firstIndex(where: { !$0.isFinite }) {
      throw ModelError(
        .invalidGraph,
        "int8 engine: bias of node '\(node.name)' holds \(bias[bad]) at element \(bad)")
    }
    return try Quantizer.quantizeBias(bias, inputScale: inputScale, weightScales: weights.scales)
  }

  /// Output parameters and whether the node writes the float logits directly.
  private func outputSide(_ node: Node, consumers: [[Int]]) throws -> (QuantParams, Bool) {
    let output = node.outputs[0]
    if explicit != nil, let p = params[output] { return (p, false) }
    if output == outputValue, consumers[output].isEmpty {
      return (try QuantParams(type: .int32, scale: 1), true)
    }
    guard let p = params[output] else { throw Fallback(reason: "no output parameters") }
    return (p, false)
  }

  private func lowerConvolution(_ index: Int, _ node: Node, _ c: Convolution, consumers: [[Int]])
    throws
  {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let xShape = try graph.shape(of: x)
    let yShape = try graph.shape(of: output)
    guard xShape.count == 4, c.kernelShape.count == 2 else {
      throw Fallback(reason: "only 2D convolutions")
    }
    guard let floats = graph.constants[node.inputs[1]]?.floats else {
      throw Fallback(reason: "weights are not a float constant")
    }
    let (sum, activation) = try fusedChain(c.postOps)
    guard let inputParams = params[x] else { throw Fallback(reason: "no input parameters") }
    let wShape = try graph.shape(of: node.inputs[1])
    let (o, i, kh, kw) = (wShape[0], wShape[1], wShape[2], wShape[3])
    // OHWI is the layout of `ReferenceKernels.conv2d` and of the kernel.
    let ohwi = Int8Layout.ohwi(floats, o: o, i: i, kh: kh, kw: kw)
    let (codes, weightParams) = try quantizedWeights(node, ohwi, outputChannels: o)
    var bias: [Int32]?
    if let b = node.convolutionBias {
      guard let values = graph.constants[b]?.floatValues else {
        throw Fallback(reason: "bias is not constant")
      }
      bias = try quantizedBias(node, values, inputScale: inputParams.scale, weights: weightParams)
    }
    let (outputParams, floatOutput) = try outputSide(node, consumers: consumers)
    var residualParams: QuantParams?
    if sum {
      guard !floatOutput, let operand = node.sumOperand, let p = params[operand],
        p.type == outputParams.type, p.zeroPoint == 0
      else { throw Fallback(reason: "residual codes differ in type or have a zero point") }
      residualParams = p
    }
    let r = try Requantization(
      inputScale: inputParams.scale, weightScales: weightParams.scales, output: outputParams,
      activation: activation, residual: residualParams)
    let geometry = Conv2DGeometry(
      batch: xShape[0], inputHeight: xShape[2], inputWidth: xShape[3], inputChannels: xShape[1],
      outputChannels: yShape[1], kernelHeight: kh, kernelWidth: kw,
      strides: (c.strides[0], c.strides[1]), pads: (c.pads[0], c.pads[1], c.pads[2], c.pads[3]),
      dilations: (c.dilations[0], c.dilations[1]), groups: c.group)
    if inputParams.type == .int16 || outputParams.type == .int16 {
      guard !floatOutput else { throw Fallback(reason: "int16 input into the float logits") }
      try lowerInt16Convolution(
        node, geometry: geometry, input: inputParams, output: outputParams, weights: codes,
        bias: bias, requantization: r, residual: sum)
      return
    }
    var refinement: OnnxRuntimeFloatConvolution?
    if let explicit, explicit.onnxRuntimeFloatConvolutions.contains(node.name),
      activation == .none, !sum
    {
      refinement = OnnxRuntimeFloatConvolution(
        geometry: geometry, input: inputParams, weights: codes, weightScales: weightParams.scales,
        bias: bias, biasScales: explicit.biasScales[node.name], source: try pointer(x))
    }
    // uint8 codes with zero point 128 are int8 codes with zero point 0 and the sign bit
    // flipped (u = s + 128: the same real values, saturated at the same ends, rounded alike),
    // so the kernel writes int8 codes and one pass flips them, instead of writing float sums
    // that a zero-point store rounds one by one (the engine's own QDQ export holds every
    // activation so).
    let flipsSign =
      explicit != nil && !floatOutput && !sum && refinement == nil
      && outputParams.type == .uint8 && outputParams.zeroPoint == 128 && outputParams.isPerTensor
    let store =
      flipsSign
      ? nil
      : try zeroPointStore(
        node, outputParams, floatOutput: floatOutput, sum: sum, refinement: refinement)
    let requantization = try kernelRequantization(
      r, codesWithoutZeroPoint: flipsSign ? .int8 : store.map { _ in outputParams.type },
      input: inputParams, weights: weightParams, output: outputParams, activation: activation)
    func makeKernel(_ shift: Int8SignShift?) throws -> Int8ConvolutionKernel {
      try oneDNNKernel {
        try Int8ConvolutionKernel(
          engine: engine, geometry: geometry,
          inputType: shift == nil ? kernelInputType(x, inputParams) : .uint8,
          inputZeroPoint: inputParams.zeroPoint,
          weights: codes,
          bias: shift == nil
            ? bias : biasFolding(sourceZeroPoint: 128, into: bias, weights: codes, outputs: o),
          requantization: requantization, floatOutput: floatOutput || store != nil,
          label: node.name)
      }
    }
    var shift: Int8SignShift?
    if Int8SignShift.isEnabled, kernelInputType(x, inputParams) == .int8,
      inputParams.isPerTensor, inputParams.zeroPoint == 0, c.pads.allSatisfy({ $0 == 0 }),
      codes.count / o <= Int8SignShift.maximumWeightsPerOutput
    {
      shift = try signShifts[x] ?? Int8SignShift(source: pointer(x), count: xShape.reduce(1, *))
    }
    var kernel = try makeKernel(shift)
    // Without VNNI oneDNN multiplies through 16-bit pairs, which saturate for unsigned codes
    // above 127: keep the signed source there.
    if shift != nil, !["vnni", "amx"].contains(where: kernel.primitive.implementation.contains) {
      shift = nil
      kernel = try makeKernel(nil)
    }
    let destination = try kernelDestination(floatOutput: floatOutput, store: store, output: output)
    if let operand = node.sumOperand {
      let source = try pointer(operand)
      if source != UnsafeRawPointer(destination) {
        let bytes = yShape.reduce(1, *)
        steps.append(
          Int8Step(work: .swift({ destination.copyMemory(from: source, byteCount: bytes) })))
      }
    }
    if floatOutput { logitsAreFloat = true }
    if !floatOutput, store == nil, outputParams.type == .int8, outputParams.isPerTensor,
      outputParams.zeroPoint == 0, r.lowerBound >= 0
    {
      nonNegativeCodes.insert(output)
    }
    nodeWeights[index] = NodeWeights(
      codes: codes, shape: [o, kh, kw, i], params: weightParams, bias: bias,
      inputScale: inputParams.scale)
    retained.append(kernel)
    let firstShift = shift.map { signShifts[x] !== $0 } ?? false
    if let shift, firstShift {
      retained.append(shift)
      steps.append(Int8Step(work: .swift({ shift.run() })))
    }
    steps.append(
      Int8Step(
        work: .primitive(
          try kernel.bind(source: shift?.buffer ?? pointer(x), destination: destination))))
    if let store { steps.append(Int8Step(work: .swift({ store.run() }))) }
    if flipsSign {
      let count = yShape.reduce(1, *)
      steps.append(
        Int8Step(work: .swift({ Int8SignShift.flip(destination, to: destination, count: count) })))
    }
    // Registered last: a node that falls back to float drops its steps, the shift's run too.
    if let shift {
      signShifts[x] = shift
      signShiftReaders += 1
    }
  }

  /// The code type a convolution's oneDNN kernel is told it reads. int8 codes with zero
  /// point 0 that are known to lie in 0...127 (the output of a ReLU/ReLU6-clamped
  /// convolution) are the same bytes and the same integers as uint8 codes, so the kernel reads
  /// them as uint8: the VNNI instruction multiplies unsigned by signed bytes, and a signed
  /// source costs oneDNN a +128 shift of every input byte and a compensation term per output
  /// channel. The exact int32 accumulator, and so every output code, is unchanged (checked in
  /// Tests/ModelTests/Int8VectorKernelTests.swift).
  private func kernelInputType(_ x: ValueID, _ p: QuantParams) -> QuantizedType {
    p.type == .int8 && p.isPerTensor && p.zeroPoint == 0 && nonNegativeCodes.contains(x)
      ? .uint8 : p.type
  }

  /// For a quantized model's Conv/Gemm whose output has a zero point: the kernel writes
  /// float32 into a buffer and `Int8ZeroPointStore` rounds and adds the zero point the way
  /// onnxruntime's requantisation does. Nil for calibrated engines and other outputs.
  /// With `refinement` (a convolution onnxruntime runs in float) the store is used whatever
  /// the zero point.
  private func zeroPointStore(
    _ node: Node, _ output: QuantParams, floatOutput: Bool, sum: Bool,
    refinement: OnnxRuntimeFloatConvolution? = nil
  ) throws -> Int8ZeroPointStore? {
    guard explicit != nil, !floatOutput, !sum, output.zeroPoint != 0 || refinement != nil,
      output.isPerTensor, output.type == .int8 || output.type == .uint8
    else { return nil }
    let store = Int8ZeroPointStore(
      count: try graph.shape(of: node.outputs[0]).reduce(1, *), params: output,
      destination: try pointer(node.outputs[0]))
    store.refinement = refinement
    retained.append(store)
    return store
  }

  /// A convolution reading or writing int16 codes (`Int8Settings.int16Nodes`), which oneDNN's
  /// int8 convolution cannot: the scalar `ReferenceKernels.conv2d` on the codes, with the
  /// same int8 weights, exact integer accumulation and requantisation as the int8 kernel.
  /// Slow, but meant for the one or two early layers a toolchain config promotes.
  private func lowerInt16Convolution(
    _ node: Node, geometry: Conv2DGeometry, input: QuantParams, output: QuantParams,
    weights: [Int8], bias: [Int32]?, requantization r: Requantization, residual: Bool
  ) throws {
    let x = node.inputs[0]
    let y = node.outputs[0]
    let source = UnsafeRawPointer(try pointer(x))
    let destination = try pointer(y)
    let inputCount = try graph.shape(of: x).reduce(1, *)
    let outputCount = try graph.shape(of: y).reduce(1, *)
    if residual, let operand = node.sumOperand {
      let from = try pointer(operand)
      let bytes = outputCount * (output.type == .int16 ? 2 : 1)
      if from != UnsafeRawPointer(destination) {
        steps.append(
          Int8Step(work: .swift({ destination.copyMemory(from: from, byteCount: bytes) })))
      }
    }
    let zeroPoint = input.zeroPoint
    func work<In: FixedWidthInteger, Out: FixedWidthInteger>(_: In.Type, _: Out.Type)
      -> () throws -> Void
    {
      {
        let out = UnsafeMutableBufferPointer(
          start: destination.assumingMemoryBound(to: Out.self), count: outputCount)
        try weights.withUnsafeBufferPointer { w in
          try (bias ?? []).withUnsafeBufferPointer { b in
            try ReferenceKernels.conv2d(
              input: UnsafeBufferPointer(
                start: source.assumingMemoryBound(to: In.self), count: inputCount),
              inputZeroPoint: zeroPoint, weights: w, bias: bias == nil ? nil : b,
              geometry: geometry, requantization: r,
              residual: residual ? UnsafeBufferPointer(out) : nil, output: out)
          }
        }
      }
    }
    func typed<In: FixedWidthInteger>(_: In.Type) throws -> () throws -> Void {
      switch output.type {
      case .int8: return work(In.self, Int8.self)
      case .uint8: return work(In.self, UInt8.self)
      case .int16: return work(In.self, Int16.self)
      case .int32: throw Fallback(reason: "int32 output codes")
      }
    }
    let body: () throws -> Void
    switch input.type {
    case .int8: body = try typed(Int8.self)
    case .uint8: body = try typed(UInt8.self)
    case .int16: body = try typed(Int16.self)
    case .int32: throw Fallback(reason: "int32 input codes")
    }
    steps.append(Int8Step(work: .swift(body)))
  }

  private func lowerGemm(_ index: Int, _ node: Node, _ g: Gemm, consumers: [[Int]]) throws {
    let a = node.inputs[0]
    let aShape = try graph.shape(of: a)
    guard !g.transA, aShape.count == 2 else { throw Fallback(reason: "transA or non-2D A") }
    guard let b = graph.constants[node.inputs[1]]?.floats else {
      throw Fallback(reason: "B is not a float constant")
    }
    let (_, activation) = try fusedChain(g.postOps)
    guard let inputParams = params[a] else { throw Fallback(reason: "no input parameters") }
    let (weights, k, n) = g.innerProductWeights(b, shape: try graph.shape(of: node.inputs[1]))
    let (codes, weightParams) = try quantizedWeights(node, weights, outputChannels: n)
    var bias: [Int32]?
    if node.inputs.count > 2 {
      guard let c = graph.constants[node.inputs[2]]?.floatValues else {
        throw Fallback(reason: "C is not constant")
      }
      let perColumn: [Float]
      if c.count == n {
        perColumn = c.map { $0 * g.beta }
      } else if c.count == 1 {
        perColumn = [Float](repeating: c[0] * g.beta, count: n)
      } else {
        throw Fallback(reason: "C is not a per-column bias")
      }
      bias = try quantizedBias(
        node, perColumn, inputScale: inputParams.scale, weights: weightParams)
    }
    let (outputParams, floatOutput) = try outputSide(node, consumers: consumers)
    let r = try Requantization(
      inputScale: inputParams.scale, weightScales: weightParams.scales, output: outputParams,
      activation: activation)
    let store = try zeroPointStore(node, outputParams, floatOutput: floatOutput, sum: false)
    let requantization = try kernelRequantization(
      r, codesWithoutZeroPoint: store.map { _ in outputParams.type }, input: inputParams,
      weights: weightParams, output: outputParams, activation: activation)
    let kernel = try oneDNNKernel {
      try Int8InnerProductKernel(
        engine: engine, m: aShape[0], n: n, k: k, inputType: inputParams.type,
        inputZeroPoint: inputParams.zeroPoint, weights: codes, bias: bias,
        requantization: requantization, floatOutput: floatOutput || store != nil,
        label: node.name)
    }
    let destination = try kernelDestination(
      floatOutput: floatOutput, store: store, output: node.outputs[0])
    if floatOutput { logitsAreFloat = true }
    nodeWeights[index] = NodeWeights(
      codes: codes, shape: [n, k], params: weightParams, bias: bias,
      inputScale: inputParams.scale)
    retained.append(kernel)
    steps.append(
      Int8Step(work: .primitive(try kernel.bind(source: pointer(a), destination: destination))))
    if let store { steps.append(Int8Step(work: .swift({ store.run() }))) }
  }

  /// Creates a oneDNN kernel with `make`; a oneDNN failure makes the node fall back.
  private func oneDNNKernel<Kernel>(_ make: () throws -> Kernel) throws -> Kernel {
    do {
      return try make()
    } catch let error as DNNLError {
      throw Fallback(reason: "oneDNN: \(error)")
    }
  }

  /// Where a Conv/Gemm kernel writes: the float logits, the zero-point store's float buffer,
  /// or `output`'s codes.
  private func kernelDestination(
    floatOutput: Bool, store: Int8ZeroPointStore?, output: ValueID
  ) throws -> UnsafeMutableRawPointer {
    if floatOutput { return UnsafeMutableRawPointer(logits) }
    if let store { return UnsafeMutableRawPointer(store.buffer) }
    return try pointer(output)
  }

  /// The kernel's requantisation: `r`, or, when a pass after the kernel finishes the output's
  /// zero point, the same scales for codes of `codeType` with zero point 0 — a zero-point store
  /// (imported models: round, then add the zero point) takes the output's type, the sign flip
  /// of uint8 codes with zero point 128 takes int8.
  private func kernelRequantization(
    _ r: Requantization, codesWithoutZeroPoint codeType: QuantizedType?, input: QuantParams,
    weights: QuantParams, output: QuantParams, activation: FusedActivation
  ) throws -> Requantization {
    guard let codeType else { return r }
    return try Requantization(
      inputScale: input.scale, weightScales: weights.scales,
      output: QuantParams(type: codeType, scale: output.scale), activation: activation)
  }

  // MARK: Other integer kernels

  /// A binary node's operands when both are computed (not constant) code tensors of the
  /// output's shape and the two and the output have parameters; nil otherwise.
  private func sameShapeCodeOperands(_ node: Node) throws -> (
    a: ValueID, b: ValueID, output: ValueID, count: Int,
    pa: QuantParams, pb: QuantParams, po: QuantParams
  )? {
    let (a, b) = (node.inputs[0], node.inputs[1])
    let output = node.outputs[0]
    let shape = try graph.shape(of: output)
    guard graph.constants[a] == nil, graph.constants[b] == nil,
      try graph.shape(of: a) == shape, try graph.shape(of: b) == shape,
      let pa = params[a], let pb = params[b], let po = params[output]
    else { return nil }
    return (a, b, output, shape.reduce(1, *), pa, pb, po)
  }

  private func lowerAdd(_ node: Node) throws {
    guard let (a, b, output, count, pa, pb, po) = try sameShapeCodeOperands(node),
      pa.type == pb.type, pa.type == po.type
    else { throw Fallback(reason: "Add of broadcast, constant or mixed-type operands") }
    guard pa.type == .int8 || pa.type == .uint8 else {
      throw Fallback(reason: "Add of \(pa.type.rawValue) codes")
    }
    // onnxruntime's QLinearAdd on the exported codes (see `Int8AddTableKernel`).
    try appendAdd(a, pa, b, pb, output, po, count: count)
  }

  private func appendAdd(
    _ a: ValueID, _ pa: QuantParams, _ b: ValueID, _ pb: QuantParams, _ output: ValueID,
    _ po: QuantParams, count: Int
  ) throws {
    let kernel = try Int8AddTableKernel(
      a: (UnsafeRawPointer(try pointer(a)), pa), b: (UnsafeRawPointer(try pointer(b)), pb),
      output: (try pointer(output), po), count: count)
    retained.append(kernel)
    steps.append(Int8Step(work: .swift({ kernel.run(threads: KernelTeam.availableThreads) })))
  }

  /// A quantized model's elementwise island as a 256-entry table (see `Int8ElementwiseIsland`).
  private func lowerIsland(_ island: Int8ElementwiseIsland) throws {
    guard let pi = params[island.input], let po = params[island.output] else {
      throw ModelError(.invalidGraph, "int8 engine: elementwise island without parameters")
    }
    var entries = try island.table(graph: graph, input: pi, output: po)
    // A QOperator QLinearAdd/QLinearMul with a constant operand: onnxruntime's arithmetic.
    let first = graph.nodes[island.nodes[0]]
    if island.nodes.count == 1, explicit?.qlinearNodes.contains(first.name) == true,
      case .binary(let op) = first.op,
      let constant = first.inputs.first(where: { graph.constants[$0] != nil }),
      let (code, constantParams) = explicit?.scalarCodes[constant],
      let arithmetic = Int8QLinearArithmetic(op, a: pi, b: constantParams, output: po)
    {
      entries = arithmetic.table(fixed: code)
    }
    let kernel = Int8TableKernel(
      entries: entries, inputType: pi.type, outputType: po.type,
      source: UnsafeRawPointer(try pointer(island.input)),
      destination: try pointer(island.output),
      count: try graph.shape(of: island.output).reduce(1, *))
    retained.append(kernel)
    steps.append(Int8Step(work: .swift({ kernel.run() })))
  }

  /// A quantized model's binary op on two code tensors of one shape (`Int8BinaryKernel`).
  private func lowerBinary(_ node: Node, _ op: BinaryOperator) throws {
    guard let (a, b, output, count, pa, pb, po) = try sameShapeCodeOperands(node),
      Int8BinaryKernel.supports([pa, pb, po])
    else { throw Fallback(reason: "binary op of broadcast, constant or non-8-bit operands") }
    let qlinear = explicit?.qlinearNodes.contains(node.name) == true
    if op == .add, qlinear, [pa, pb, po].allSatisfy({ $0.type == .uint8 }) {
      // onnxruntime's QLinearAdd on uint8 codes is the arithmetic `Int8AddTableKernel`
      // vectorises (the engine's own residual Adds, as its QDQ export writes them).
      try appendAdd(a, pa, b, pb, output, po, count: count)
      return
    }
    let kernel = Int8BinaryKernel(
      op, a: (UnsafeRawPointer(try pointer(a)), pa), b: (UnsafeRawPointer(try pointer(b)), pb),
      output: (try pointer(output), po), count: count,
      qlinear: qlinear ? Int8QLinearArithmetic(op, a: pa, b: pb, output: po) : nil)
    retained.append(kernel)
    steps.append(Int8Step(work: .swift({ kernel.run() })))
  }

  private func lowerGlobalAverage(_ node: Node) throws {
    let x = node.inputs[0]
    let shape = try graph.shape(of: x)
    guard shape.count == 4, let pi = params[x], let po = params[node.outputs[0]], pi.type == po.type
    else { throw Fallback(reason: "not a 4D input of matching code type") }
    let (source, destination) = (try pointer(x), try pointer(node.outputs[0]))
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
    if explicit != nil, pi.isPerTensor, po.isPerTensor, pi.type != .int16 {
      // A quantized model: onnxruntime's QLinearGlobalAveragePool arithmetic.
      let kernel = Int8GlobalAveragePoolKernel(
        source: UnsafeRawPointer(source), destination: destination, batch: n, pixels: h * w,
        channels: c, input: pi, output: po)
      retained.append(kernel)
      steps.append(Int8Step(work: .swift({ kernel.run() })))
      return
    }
    func body<T: FixedWidthInteger & SIMDScalar>(_: T.Type) -> () throws -> Void {
      {
        Int8Passes.globalAveragePool(
          source.assumingMemoryBound(to: T.self), inputParams: pi, batch: n, pixels: h * w,
          channels: c, output: destination.assumingMemoryBound(to: T.self), outputParams: po)
      }
    }
    switch pi.type {
    case .int8: steps.append(Int8Step(work: .swift(body(Int8.self))))
    case .uint8: steps.append(Int8Step(work: .swift(body(UInt8.self))))
    default: throw Fallback(reason: "global average pooling of \(pi.type.rawValue) codes")
    }
  }

  private func lowerMaxPool(_ node: Node, _ p: Pooling) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    let inShape = try graph.shape(of: x)
    let outShape = try graph.shape(of: output)
    guard inShape.count == 4, p.kernelShape.count == 2, let pi = params[x] else {
      throw Fallback(reason: "only 2D pooling")
    }
    guard params[output] == pi else { throw Fallback(reason: "output parameters differ") }
    let (left, right) = p.oneDNNPadding(input: inShape, output: outShape)
    let kernel = try Int8MaxPoolKernel(
      engine: engine, type: pi.type, input: inShape, output: outShape, kernel: p.kernelShape,
      strides: p.strides, paddingLeft: left, paddingRight: right, dilations: p.dilations,
      label: node.name)
    retained.append(kernel)
    steps.append(
      Int8Step(work: .primitive(try kernel.bind(source: pointer(x), destination: pointer(output)))))
  }

  private func lowerLookup(_ node: Node, _ activation: Activation) throws {
    let nonlinearity: Nonlinearity
    switch activation {
    case .sigmoid: nonlinearity = .sigmoid
    case .tanh: nonlinearity = .tanh
    case .hardSwish: nonlinearity = .hardSwish
    case .gelu(tanhApproximation: false): nonlinearity = .gelu
    default: throw Fallback(reason: "no lookup table for \(activation)")
    }
    let x = node.inputs[0]
    let output = node.outputs[0]
    guard let pi = params[x], let po = params[output] else {
      throw Fallback(reason: "no parameters")
    }
    // GELU as onnxruntime computes the exported `DequantizeLinear → Gelu → QuantizeLinear`.
    let table =
      nonlinearity == .gelu
      ? try LookupTable.onnxRuntimeGelu(input: pi, output: po)
      : try LookupTable(nonlinearity, input: pi, output: po)
    let count = try graph.shape(of: x).reduce(1, *)
    let (source, destination) = (try pointer(x), try pointer(output))
    let bytes = Int8ByteTable(table)
    retained.append(bytes)
    steps.append(
      Int8Step(
        work: .swift({
          Int8Passes.lookup(
            source.assumingMemoryBound(to: UInt8.self), count: count, table: bytes.entries,
            into: destination.assumingMemoryBound(to: UInt8.self),
            threads: KernelTeam.availableThreads)
        })))
  }

  private func lowerView(_ node: Node) throws {
    let x = node.inputs[0]
    let output = node.outputs[0]
    guard params[x] != nil, params[output] == params[x] else {
      throw Fallback(reason: "float32 values or a change of parameters")
    }
    guard Int8Layout.channelsLast(try graph.shape(of: x)) == nil,
      Int8Layout.channelsLast(try graph.shape(of: output)) == nil
    else { throw Fallback(reason: "a reshape across the channels-last layout") }
    let (source, destination) = (try pointer(x), try pointer(output))
    let bytes = try graph.shape(of: output).reduce(1, *)
    if source != UnsafeRawPointer(destination) {
      steps.append(
        Int8Step(work: .swift({ destination.copyMemory(from: source, byteCount: bytes) })))
    }
  }

  /// Split or Concat of rank-4 tensors along channels, as channel-slice copies on codes
  /// (through a requantisation table where the parameters differ; see `Int8ChannelSlices`).
  ///
  /// A split output (other than the first) whose only reader is a Concat, while the split's
  /// input is still alive when that Concat runs, is not written at all: the Concat reads its
  /// channels straight from the split's input through the composition of both tables, which
  /// is the same byte for byte (FasterNet's partial convolution passes 3/4 of every block's
  /// channels through this way). Should the Concat not run on codes after all, `lower`
  /// writes the part first (`materializeForwarded`).
  private func lowerChannelSlices(_ node: Node, consumers: [[Int]]) throws {
    let isSplit: Bool
    if case .split = node.op { isSplit = true } else { isSplit = false }
    let whole = isSplit ? node.inputs[0] : node.outputs[0]
    let parts = isSplit ? node.outputs : node.inputs
    let shape = try graph.shape(of: whole)
    guard shape.count == 4, let wholeParams = params[whole], wholeParams.isPerTensor,
      wholeParams.type == .int8 || wholeParams.type == .uint8
    else { throw Fallback(reason: "channel slices need rank-4 per-tensor 8-bit codes") }
    let pixels = shape[0] * shape[2] * shape[3]
    let wholePointer = try pointer(whole).assumingMemoryBound(to: UInt8.self)
    var slices: [Int8ChannelSlice] = []
    var skipped: [ValueID: ForwardedSlice] = [:]
    var offset = 0
    for (position, part) in parts.enumerated() {
      guard graph.constants[part] == nil, let partParams = params[part], partParams.isPerTensor,
        partParams.type == .int8 || partParams.type == .uint8
      else { throw Fallback(reason: "a constant or non-8-bit channel slice") }
      let channels = try graph.shape(of: part)[1]
      if isSplit {
        let table = try Int8ChannelSlices.requantizationTable(from: wholeParams, to: partParams)
        if position > 0, isForwardable(part, of: whole, consumers: consumers) {
          skipped[part] = ForwardedSlice(
            whole: whole, channels: shape[1], offset: offset, table: table)
        } else {
          slices.append(
            Int8ChannelSlice(
              source: UnsafePointer(wholePointer), sourceStride: shape[1], sourceOffset: offset,
              destination: try pointer(part).assumingMemoryBound(to: UInt8.self),
              destinationStride: channels, destinationOffset: 0, channels: channels,
              table: table))
        }
      } else {
        let table = try Int8ChannelSlices.requantizationTable(from: partParams, to: wholeParams)
        if let forward = forwarded[part] {
          slices.append(
            Int8ChannelSlice(
              source: UnsafePointer(try pointer(forward.whole).assumingMemoryBound(to: UInt8.self)),
              sourceStride: forward.channels, sourceOffset: forward.offset,
              destination: wholePointer, destinationStride: shape[1], destinationOffset: offset,
              channels: channels, table: Int8ChannelSlices.composed(forward.table, table)))
        } else {
          slices.append(
            Int8ChannelSlice(
              source: UnsafePointer(try pointer(part).assumingMemoryBound(to: UInt8.self)),
              sourceStride: channels, sourceOffset: 0,
              destination: wholePointer, destinationStride: shape[1], destinationOffset: offset,
              channels: channels, table: table))
        }
      }
      offset += channels
    }
    guard offset == shape[1] else { throw Fallback(reason: "slices do not cover the channels") }
    forwarded.merge(skipped) { $1 }
    let kernel = Int8ChannelSliceKernel(pixels: pixels, slices: slices)
    retained.append(kernel)
    steps.append(Int8Step(work: .swift({ kernel.run() })))
  }

  /// A split output that is never written (see `lowerChannelSlices`).
  private struct ForwardedSlice {
    var whole: ValueID
    /// The whole tensor's channel count (its channel stride) and the part's first channel.
    var channels: Int
    var offset: Int
    var table: [UInt8]?
  }

  /// True when `part` is read only by a Concat along channels that is not forced to float,
  /// and `whole` still holds its codes when that Concat runs.
  private func isForwardable(_ part: ValueID, of whole: ValueID, consumers: [[Int]]) -> Bool {
    guard !graph.outputs.contains(part), consumers[part].count == 1 else { return false }
    let reader = consumers[part][0]
    guard case .concat(1) = graph.nodes[reader].op, !floatNodes.contains(graph.nodes[reader].name)
    else { return false }
    return whole == inputValue || graph.outputs.contains(whole)
      || (lastRead[whole] ?? -1) > reader
  }

  /// Writes the forwarded split outputs `node` reads, for a node that does not run as
  /// channel slices.
  private func materializeForwarded(_ node: Node) throws {
    for input in node.inputs {
      guard let forward = forwarded.removeValue(forKey: input) else { continue }
      let shape = try graph.shape(of: input)
      let kernel = Int8ChannelSliceKernel(
        pixels: shape[0] * shape[2] * shape[3],
        slices: [
          Int8ChannelSlice(
            source: UnsafePointer(try pointer(forward.whole).assumingMemoryBound(to: UInt8.self)),
            sourceStride: forward.channels, sourceOffset: forward.offset,
            destination: try pointer(input).assumingMemoryBound(to: UInt8.self),
            destinationStride: shape[1], destinationOffset: 0, channels: shape[1],
            table: forward.table)
        ])
      retained.append(kernel)
      steps.append(Int8Step(work: .swift({ kernel.run() })))
    }
  }

  // MARK: Float fallback

  /// Dequantise the inputs, run the reference evaluator, quantise the outputs. Allocates per
  /// run (the node's tensors); meant for the few nodes without an integer kernel.
  private func lowerFallback(_ index: Int, _ node: Node) throws {
    let graph = self.graph
    var sources: [(ValueID, UnsafeRawPointer?, QuantParams?, [Int])] = []
    for input in node.inputs {
      if graph.constants[input] != nil {
        sources.append((input, nil, nil, []))
      } else if explicit != nil, params[input] == nil {
        sources.append(
          (input, UnsafeRawPointer(try pointer(input)), nil, try graph.shape(of: input)))
      } else {
        guard let p = params[input] else {
          throw ModelError(
            .invalidGraph, "int8 engine: '\(graph.values[input].name)' has no parameters")
        }
        sources.append((input, UnsafeRawPointer(try pointer(input)), p, try graph.shape(of: input)))
      }
    }
    var targets: [(UnsafeMutableRawPointer, QuantParams?, [Int])] = []
    for output in node.outputs {
      if explicit != nil, params[output] == nil {
        let target =
          output == outputValue ? UnsafeMutableRawPointer(logits) : try pointer(output)
        targets.append((target, nil, try graph.shape(of: output)))
        continue
      }
      guard let p = params[output] else {
        throw ModelError(
          .invalidGraph, "int8 engine: '\(graph.values[output].name)' has no parameters")
      }
      targets.append((try pointer(output), p, try graph.shape(of: output)))
    }
    let floatOutput =
      node.outputs == [outputValue] && (explicit == nil || params[outputValue] == nil)
    let logits = self.logits
    if floatOutput { logitsAreFloat = true }
    steps.append(
      Int8Step(
        work: .swift({
          let inputs = try sources.map { id, pointer, p, shape -> Tensor in
            if let pointer, p == nil {
              let count = shape.reduce(1, *)
              return Tensor(
                shape: shape,
                floats: Array(
                  UnsafeBufferPointer(
                    start: pointer.assumingMemoryBound(to: Float.self), count: count)))
            }
            guard let pointer, let p else {
              guard let constant = graph.constants[id] else {
                throw ModelError(.missingValue, "constant '\(graph.values[id].name)' is missing")
              }
              return constant
            }
            var values = [Float](repeating: 0, count: shape.reduce(1, *))
            try values.withUnsafeMutableBufferPointer {
              try Int8Layout.dequantize(pointer, shape: shape, params: p, into: $0)
            }
            return Tensor(shape: shape, floats: values)
          }
          let outputs = try ReferenceEvaluator.evaluate(node, inputs)
          for (tensor, target) in zip(outputs, targets) {
            guard let values = tensor.floats else {
              throw ModelError(
                .invalidGraph, "node '\(node.name)': non-float output in int8 engine")
            }
            if floatOutput {
              _ = UnsafeMutableBufferPointer(start: logits, count: values.count)
                .update(fromContentsOf: values)
            } else if let p = target.1 {
              try values.withUnsafeBufferPointer {
                try Int8Layout.quantize($0, shape: target.2, params: p, into: target.0)
              }
            } else {
              _ = UnsafeMutableBufferPointer(
                start: target.0.assumingMemoryBound(to: Float.self), count: values.count
              ).update(fromContentsOf: values)
            }
          }
        })))
  }

  // MARK: Buffers

  private func pointer(_ value: ValueID) throws -> UnsafeMutableRawPointer {
    if value == inputValue { return inputCodes }
    guard let offset = plan.offsets[value] else {
      throw ModelError(
        .invalidGraph, "int8 engine: value '\(graph.values[value].name)' has no buffer")
    }
    return arena + offset
  }
}
