import Foundation

// Elementwise integer kernels for models that carry their own quantisation (QDQ/QOperator
// imports). Each one computes exactly what the model defines for the codes, with the float32
// arithmetic the float fallback would use: dequantise `(q - zp)·s`, the float op(s), quantise
// `saturate(round_half_even(y / s) + zp)`. They exist so that no node of such a model runs
// through the per-node reference evaluator (which allocates and is ~100x slower).

/// A chain of elementwise nodes from one 8-bit quantised value to another, whose interior
/// values the model keeps in float (e.g. DequantizeLinear → Div → Erf → QuantizeLinear, the
/// float island of an exact GELU). Every other input of the chain is a one-element constant,
/// so the chain's output code is a function of its input code alone: a 256-entry table.
struct Int8ElementwiseIsland {
  /// Node indices, in graph order; the first reads `input`, the last writes `output`.
  var nodes: [Int]
  var input: ValueID
  var output: ValueID

  /// Ops computed element by element with numpy broadcasting (so a one-element constant
  /// operand keeps the op a function of the other operand's element alone).
  static func isElementwise(_ op: Op) -> Bool {
    switch op {
    case .binary, .activation, .erf, .identity: true
    default: false
    }
  }

  /// The islands of `graph` under the parameters `params` (values without parameters are
  /// float). An island starts at an elementwise node reading one quantised 8-bit value (its
  /// other inputs one-element constants) and follows single-consumer float values through
  /// elementwise nodes until a node whose output is quantised.
  static func find(in graph: Graph, params: [ValueID: QuantParams]) -> [Int8ElementwiseIsland] {
    let consumers = graph.consumers()
    let outputs = Set(graph.outputs)
    func is8Bit(_ id: ValueID) -> Bool {
      guard let p = params[id], p.isPerTensor else { return false }
      return p.type == .int8 || p.type == .uint8
    }
    /// The node's single non-constant input when every other input is a one-element constant.
    func variableInput(_ node: Node) -> ValueID? {
      let variables = node.inputs.filter { graph.constants[$0] == nil }
      guard variables.count == 1,
        node.inputs.allSatisfy({ graph.constants[$0].map { $0.elementCount == 1 } ?? true }),
        node.outputs.count == 1, graph.values[node.outputs[0]].elementType == .float32
      else { return nil }
      return variables[0]
    }
    var islands: [Int8ElementwiseIsland] = []
    var taken = Set<Int>()
    for (index, node) in graph.nodes.enumerated() where !taken.contains(index) {
      guard isElementwise(node.op), let input = variableInput(node), is8Bit(input) else {
        continue
      }
      var chain = [index]
      var current = node
      while !is8Bit(current.outputs[0]) {
        let value = current.outputs[0]
        guard params[value] == nil, !outputs.contains(value), consumers[value].count == 1
        else { break }
        let next = consumers[value][0]
        let candidate = graph.nodes[next]
        guard isElementwise(candidate.op), variableInput(candidate) == value else { break }
        chain.append(next)
        current = candidate
      }
      guard is8Bit(current.outputs[0]) else { continue }
      taken.formUnion(chain)
      islands.append(
        Int8ElementwiseIsland(nodes: chain, input: input, output: current.outputs[0]))
    }
    return islands
  }

  /// The output code of every input code (indexed by `code - input.type.minimum`): the
  /// chain evaluated in float32 on all dequantised codes at once, then quantised.
  func table(graph: Graph, input p: QuantParams, output q: QuantParams) throws -> [Int32] {
    let codes = Array(p.type.minimum...p.type.maximum)
    let real = codes.map { Float(Int32($0) - p.zeroPoint) * p.scale }
    var values: [ValueID: Tensor] = [input: Tensor(shape: [codes.count], floats: real)]
    for index in nodes {
      let node = graph.nodes[index]
      let inputs = try node.inputs.map { id -> Tensor in
        if let t = values[id] ?? graph.constants[id] { return t }
        throw ModelError(
          .invalidGraph, "int8 engine: '\(graph.values[id].name)' of node '\(node.name)' is missing"
        )
      }
      let result = try ReferenceEvaluator.evaluate(node, inputs)
      values[node.outputs[0]] = result[0]
    }
    guard let y = values[output]?.floats, y.count == codes.count else {
      throw ModelError(
        .invalidGraph,
        "int8 engine: the elementwise chain ending in '\(graph.values[output].name)' does not map \(codes.count) codes one to one"
      )
    }
    var table = [Int32](repeating: 0, count: y.count)
    let low = Float(q.type.minimum) - Float(q.zeroPoint)
    let high = Float(q.type.maximum) - Float(q.zeroPoint)
    for (i, value) in y.enumerated() {
      // The quantisation of `Int8Layout.quantize` (QuantizeLinear): NaN to the zero point.
      let v = value / q.scale
      let clamped = v.isNaN ? 0 : min(max(v, low), high)
      table[i] = Int32(clamped.rounded(.toNearestOrEven)) + q.zeroPoint
    }
    return table
  }
}

/// Applies a 256-entry code table (see `Int8ElementwiseIsland`) to a buffer of codes.
final class Int8TableKernel {
  private let table: [UInt8]
  private let offset: Int
  private let source: UnsafeRawPointer
  private let destination: UnsafeMutableRawPointer
  private let count: Int

  /// `entries` indexed by `code - inputType.minimum`, each an output code of `outputType`.
  init(
    entries: [Int32], inputType: QuantizedType, outputType: QuantizedType,
    source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
  ) {
    // Stored as the output codes' bit patterns, so one byte loop serves every type pair.
    table = entries.map { outputType == .uint8 ? UInt8($0) : UInt8(bitPattern: Int8($0)) }
    offset = inputType == .int8 ? 128 : 0
    self.source = source
    self.destination = destination
    self.count = count
  }

  func run() {
    let input = source.assumingMemoryBound(to: UInt8.self)
    let output = destination.assumingMemoryBound(to: UInt8.self)
    table.withUnsafeBufferPointer { t in
      if offset == 0 {
        for i in 0..<count { output[i] = t[Int(input[i])] }
      } else {
        // int8 codes: flipping the sign bit maps -128...127 onto 0...255 in order.
        for i in 0..<count { output[i] = t[Int(input[i] ^ 0x80)] }
      }
    }
  }
}

/// A binary elementwise op on two 8-bit code tensors of the same shape (and layout), as the
/// model defines it: `Q(DQ(a) ∘ DQ(b))` in float32. onnxruntime runs exactly this for a QDQ
/// `DequantizeLinear → Add/Mul → QuantizeLinear` it does not fuse.
final class Int8BinaryKernel {
  private let op: BinaryOperator
  private let a: (pointer: UnsafeRawPointer, params: QuantParams)
  private let b: (pointer: UnsafeRawPointer, params: QuantParams)
  private let output: (pointer: UnsafeMutableRawPointer, params: QuantParams)
  private let count: Int

  init(
    _ op: BinaryOperator, a: (UnsafeRawPointer, QuantParams), b: (UnsafeRawPointer, QuantParams),
    output: (UnsafeMutableRawPointer, QuantParams), count: Int
  ) {
    self.op = op
    self.a = a
    self.b = b
    self.output = output
    self.count = count
  }

  func run() {
    switch (a.params.type, b.params.type, output.params.type) {
    case (.int8, .int8, .int8): run(Int8.self, Int8.self, Int8.self)
    case (.uint8, .uint8, .uint8): run(UInt8.self, UInt8.self, UInt8.self)
    case (.int8, .int8, .uint8): run(Int8.self, Int8.self, UInt8.self)
    case (.uint8, .uint8, .int8): run(UInt8.self, UInt8.self, Int8.self)
    case (.int8, .uint8, _):
      output.params.type == .int8
        ? run(Int8.self, UInt8.self, Int8.self) : run(Int8.self, UInt8.self, UInt8.self)
    default:
      output.params.type == .int8
        ? run(UInt8.self, Int8.self, Int8.self) : run(UInt8.self, Int8.self, UInt8.self)
    }
  }

  /// Whether the kernel handles these code types (8-bit, per tensor).
  static func supports(_ params: [QuantParams]) -> Bool {
    params.allSatisfy { $0.isPerTensor && ($0.type == .int8 || $0.type == .uint8) }
  }

  private func run<A: FixedWidthInteger, B: FixedWidthInteger, Out: FixedWidthInteger>(
    _: A.Type, _: B.Type, _: Out.Type
  ) {
    let x = a.pointer.assumingMemoryBound(to: A.self)
    let y = b.pointer.assumingMemoryBound(to: B.self)
    let z = output.pointer.assumingMemoryBound(to: Out.self)
    let (sa, za) = (a.params.scale, a.params.zeroPoint)
    let (sb, zb) = (b.params.scale, b.params.zeroPoint)
    let (so, zo) = (output.params.scale, output.params.zeroPoint)
    let low = Float(output.params.type.minimum) - Float(zo)
    let high = Float(output.params.type.maximum) - Float(zo)
    @inline(__always) func store(_ value: Float, _ i: Int) {
      let v = value / so
      let clamped = v.isNaN ? 0 : min(max(v, low), high)
      z[i] = Out(truncatingIfNeeded: Int32(clamped.rounded(.toNearestOrEven)) + zo)
    }
    switch op {
    case .add:
      for i in 0..<count {
        store(Float(Int32(x[i]) - za) * sa + Float(Int32(y[i]) - zb) * sb, i)
      }
    case .sub:
      for i in 0..<count {
        store(Float(Int32(x[i]) - za) * sa - Float(Int32(y[i]) - zb) * sb, i)
      }
    case .mul:
      for i in 0..<count {
        store((Float(Int32(x[i]) - za) * sa) * (Float(Int32(y[i]) - zb) * sb), i)
      }
    case .div:
      for i in 0..<count {
        store((Float(Int32(x[i]) - za) * sa) / (Float(Int32(y[i]) - zb) * sb), i)
      }
    }
  }
}
