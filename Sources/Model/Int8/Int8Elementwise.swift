import CInt8Kernels
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
      if node.op == .erf, let x = inputs[0].floats {
        // onnxruntime's Erf, not the correctly rounded one: the table must round as it does.
        values[node.outputs[0]] = Tensor(
          shape: inputs[0].shape, floats: x.map(OnnxRuntimeArithmetic.erf))
        continue
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

/// Applies a 256-entry code table (see `Int8ElementwiseIsland`) to a buffer of codes, with the
/// engine's byte lookup (`Int8Passes.lookup`: AVX-512 shuffles where the CPU has them, on the
/// team's threads).
final class Int8TableKernel {
  /// Output code bit patterns indexed by input code bit pattern.
  private let table: [UInt8]
  private let source: UnsafeRawPointer
  private let destination: UnsafeMutableRawPointer
  private let count: Int

  /// `entries` indexed by `code - inputType.minimum`, each an output code of `outputType`.
  init(
    entries: [Int32], inputType: QuantizedType, outputType: QuantizedType,
    source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, count: Int
  ) {
    precondition(entries.count == 256, "a code table has 256 entries, got \(entries.count)")
    // int8 codes: the bit pattern with its sign bit flipped is `code + 128`, the entry's index.
    let flip = inputType == .int8 ? 0x80 : 0
    table = (0..<256).map { pattern in
      let entry = entries[pattern ^ flip]
      return outputType == .uint8 ? UInt8(entry) : UInt8(bitPattern: Int8(entry))
    }
    self.source = source
    self.destination = destination
    self.count = count
  }

  func run() {
    table.withUnsafeBufferPointer { t in
      Int8Passes.lookup(
        source.assumingMemoryBound(to: UInt8.self), count: count, table: t.baseAddress!,
        into: destination.assumingMemoryBound(to: UInt8.self), threads: KernelTeam.availableThreads)
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

  /// onnxruntime's QLinearAdd/QLinearMul arithmetic instead of the float definition.
  private let qlinear: Int8QLinearArithmetic?

  init(
    _ op: BinaryOperator, a: (UnsafeRawPointer, QuantParams), b: (UnsafeRawPointer, QuantParams),
    output: (UnsafeMutableRawPointer, QuantParams), count: Int,
    qlinear: Int8QLinearArithmetic? = nil
  ) {
    self.qlinear = qlinear
    self.op = op
    self.a = a
    self.b = b
    self.output = output
    self.count = count
  }

  /// Runs on the team's threads, each on whole 64-byte blocks of the output.
  func run() {
    let blocks = (count + 63) / 64
    KernelTeam.forEachRange(blocks, threads: KernelTeam.threads(forBytes: count)) { range in
      self.run(range.lowerBound * 64..<min(self.count, range.upperBound * 64))
    }
  }

  private func run(_ elements: Range<Int>) {
    if op == .add, qlinear == nil, Int8Passes.usesVectorLookup {
      // The same float32 operations as the Swift loop below, sixteen codes at a time.
      let (pa, pb, po) = (a.params, b.params, output.params)
      ie_int8_add_float_avx512(
        a.pointer.assumingMemoryBound(to: UInt8.self), pa.type == .int8 ? 1 : 0, pa.zeroPoint,
        pa.scale, b.pointer.assumingMemoryBound(to: UInt8.self), pb.type == .int8 ? 1 : 0,
        pb.zeroPoint, pb.scale, po.scale, po.zeroPoint,
        Float(po.type.minimum) - Float(po.zeroPoint), Float(po.type.maximum) - Float(po.zeroPoint),
        output.pointer.assumingMemoryBound(to: UInt8.self), elements.lowerBound,
        elements.upperBound)
      return
    }
    switch (a.params.type, b.params.type, output.params.type) {
    case (.int8, .int8, .int8): run(Int8.self, Int8.self, Int8.self, elements)
    case (.uint8, .uint8, .uint8): run(UInt8.self, UInt8.self, UInt8.self, elements)
    case (.int8, .int8, .uint8): run(Int8.self, Int8.self, UInt8.self, elements)
    case (.uint8, .uint8, .int8): run(UInt8.self, UInt8.self, Int8.self, elements)
    case (.int8, .uint8, _):
      output.params.type == .int8
        ? run(Int8.self, UInt8.self, Int8.self, elements)
        : run(Int8.self, UInt8.self, UInt8.self, elements)
    default:
      output.params.type == .int8
        ? run(UInt8.self, Int8.self, Int8.self, elements)
        : run(UInt8.self, Int8.self, UInt8.self, elements)
    }
  }

  /// Whether the kernel handles these code types (8-bit, per tensor).
  static func supports(_ params: [QuantParams]) -> Bool {
    params.allSatisfy { $0.isPerTensor && ($0.type == .int8 || $0.type == .uint8) }
  }

  private func run<A: FixedWidthInteger, B: FixedWidthInteger, Out: FixedWidthInteger>(
    _: A.Type, _: B.Type, _: Out.Type, _ elements: Range<Int>
  ) {
    let x = a.pointer.assumingMemoryBound(to: A.self)
    let y = b.pointer.assumingMemoryBound(to: B.self)
    let z = output.pointer.assumingMemoryBound(to: Out.self)
    let (sa, za) = (a.params.scale, a.params.zeroPoint)
    let (sb, zb) = (b.params.scale, b.params.zeroPoint)
    let (so, zo) = (output.params.scale, output.params.zeroPoint)
    let low = Float(output.params.type.minimum) - Float(zo)
    let high = Float(output.params.type.maximum) - Float(zo)
    if let qlinear {
      for i in elements {
        z[i] = Out(truncatingIfNeeded: qlinear.code(Int32(x[i]), Int32(y[i])))
      }
      return
    }
    @inline(__always) func store(_ value: Float, _ i: Int) {
      let v = value / so
      let clamped = v.isNaN ? 0 : min(max(v, low), high)
      z[i] = Out(truncatingIfNeeded: Int32(clamped.rounded(.toNearestOrEven)) + zo)
    }
    switch op {
    case .add:
      for i in elements {
        store(Float(Int32(x[i]) - za) * sa + Float(Int32(y[i]) - zb) * sb, i)
      }
    case .sub:
      for i in elements {
        store(Float(Int32(x[i]) - za) * sa - Float(Int32(y[i]) - zb) * sb, i)
      }
    case .mul:
      for i in elements {
        store((Float(Int32(x[i]) - za) * sa) * (Float(Int32(y[i]) - zb) * sb), i)
      }
    case .div:
      for i in elements {
        store((Float(Int32(x[i]) - za) * sa) / (Float(Int32(y[i]) - zb) * sb), i)
      }
    }
  }
}

/// The last step of a quantized model's Conv/Gemm with an output zero point: onnxruntime's
/// requantisation `saturate(round_half_even(y) + zp)` of the kernel's unrounded float32
/// output `y = (acc + bias)·(s_in·s_w / s_out)`. oneDNN would round `y + zp` instead, which
/// differs whenever the float addition moves `y` across a rounding boundary (about one
/// element in 10⁵), and the difference grows through deep networks.
final class Int8ZeroPointStore {
  /// The kernel's float32 output, in the destination's layout.
  let buffer: UnsafeMutablePointer<Float>
  private let destination: UnsafeMutableRawPointer
  private let count: Int
  private let params: QuantParams

  /// A convolution onnxruntime runs in float: elements whose value lies within
  /// `tieMargin` of a rounding boundary are re-evaluated in onnxruntime's order and rounded
  /// from that value instead.
  var refinement: OnnxRuntimeFloatConvolution?
  /// Elements re-evaluated by `refinement` in the last run (for tests and measurements).
  private(set) var refinedCount = 0
  /// The indices of the elements next to a tie (allocated on the first refined run).
  private var tieIndices: UnsafeMutablePointer<UInt32>?

  /// How close to `k + ½` (in output LSBs) an exactly accumulated value must be for the
  /// float32 sum onnxruntime computes to possibly round to the other side. The largest
  /// difference between the two measured on the float Convs of the EfficientNet-Lite0 and
  /// FasterNet-T0 QDQ models (two images each) is 3.2·10⁻⁴ LSB; 2⁻⁸ leaves a factor of 12
  /// and re-evaluates about 0.8 % of their elements. It is a measured margin, not a bound:
  /// an element whose float sum strays further would keep the exact value's rounding.
  static let tieMargin: Float = 1.0 / 256

  init(count: Int, params: QuantParams, destination: UnsafeMutableRawPointer) {
    buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    buffer.initialize(repeating: 0, count: max(count, 1))
    self.destination = destination
    self.count = count
    self.params = params
  }

  deinit {
    buffer.deallocate()
    tieIndices?.deallocate()
  }

  func run() {
    switch params.type {
    case .uint8: store(UInt8.self)
    default: store(Int8.self)
    }
  }

  private func store<Code: FixedWidthInteger>(_: Code.Type) {
    guard Int8Passes.usesVectorLookup else {
      refinedCount = store(Code.self, 0..<count)
      return
    }
    let bounds = self.bounds(Code.self)
    let blocks = (count + 63) / 64
    KernelTeam.forEachRange(blocks, threads: KernelTeam.threads(forBytes: count)) { range in
      // The same clamp, NaN to 0, rounding half to even and zero point as `code(_:_:)`,
      // sixteen at a time.
      ie_int8_store_codes_avx512(
        self.buffer, range.lowerBound * 64, min(self.count, range.upperBound * 64),
        self.params.zeroPoint, bounds.low, bounds.high,
        self.destination.assumingMemoryBound(to: UInt8.self))
    }
    guard let refinement else {
      refinedCount = 0
      return
    }
    // Then the few elements next to a rounding tie again, from onnxruntime's float sum.
    if tieIndices == nil { tieIndices = .allocate(capacity: max(count, 1)) }
    let ties = tieIndices!
    let found = ie_int8_near_ties_avx512(buffer, count, Self.tieMargin, ties)
    let out = destination.assumingMemoryBound(to: Code.self)
    // Each re-evaluation is a dot product over the convolution's reduction: worth threads
    // from a few dozen on.
    let team = found >= 32 ? refinement.threads : 1
    KernelTeam.forEachRange(team, threads: team) { members in
      for member in members {
        for t in (found * member / team)..<(found * (member + 1) / team) {
          let i = Int(ties[t])
          out[i] = self.code(refinement.value(at: i, thread: member) / self.params.scale, bounds)
        }
      }
    }
    refinedCount = found
  }

  /// Stores `elements` one by one; returns how many of them the refinement re-evaluated.
  private func store<Code: FixedWidthInteger>(_: Code.Type, _ elements: Range<Int>) -> Int {
    let out = destination.assumingMemoryBound(to: Code.self)
    let bounds = self.bounds(Code.self)
    var refined = 0
    for i in elements {
      var y = buffer[i]
      if let refinement, abs(y - y.rounded(.down) - 0.5) < Self.tieMargin {
        // onnxruntime's QuantizeLinear divides by the scale.
        y = refinement.value(at: i) / params.scale
        refined += 1
      }
      out[i] = code(y, bounds)
    }
    return refined
  }

  /// The range of `Code` less the zero point: where `code(_:_:)` saturates.
  private func bounds<Code: FixedWidthInteger>(_: Code.Type) -> (low: Float, high: Float) {
    (Float(Int32(Code.min) - params.zeroPoint), Float(Int32(Code.max) - params.zeroPoint))
  }

  /// `saturate(round_half_even(y) + zp)` as a code of type `Code` (`bounds` its `bounds`),
  /// NaN to the zero point.
  @inline(__always)
  private func code<Code: FixedWidthInteger>(_ y: Float, _ bounds: (low: Float, high: Float))
    -> Code
  {
    let clamped = y.isNaN ? 0 : min(max(y, bounds.low), bounds.high)
    return Code(truncatingIfNeeded: Int32(clamped.rounded(.toNearestOrEven)) + params.zeroPoint)
  }
}

/// Global average pooling of a quantized model's NHWC codes as onnxruntime's
/// QLinearGlobalAveragePool computes it: the exact integer sum `Σ q - zp_in·hw`, times
/// `s_in / (s_out·hw)` in float32, rounded half to even, then the output zero point added and
/// the result saturated.
final class Int8GlobalAveragePoolKernel {
  private let source: UnsafeRawPointer
  private let destination: UnsafeMutableRawPointer
  private let batch: Int
  private let pixels: Int
  private let channels: Int
  private let input: QuantParams
  private let output: QuantParams
  private var sums: [Int32]

  init(
    source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, batch: Int, pixels: Int,
    channels: Int, input: QuantParams, output: QuantParams
  ) {
    self.source = source
    self.destination = destination
    self.batch = batch
    self.pixels = pixels
    self.channels = channels
    self.input = input
    self.output = output
    sums = [Int32](repeating: 0, count: channels)
  }

  func run() {
    switch (input.type, output.type) {
    case (.uint8, .uint8): run(UInt8.self, UInt8.self)
    case (.int8, .int8): run(Int8.self, Int8.self)
    case (.uint8, _): run(UInt8.self, Int8.self)
    default: run(Int8.self, UInt8.self)
    }
  }

  private func run<In: FixedWidthInteger, Out: FixedWidthInteger>(_: In.Type, _: Out.Type) {
    let x = source.assumingMemoryBound(to: In.self)
    let y = destination.assumingMemoryBound(to: Out.self)
    let scale = input.scale / (output.scale * Float(pixels))
    let bias = -input.zeroPoint * Int32(pixels)
    let zp = output.zeroPoint
    let low = Float(Int32(Out.min) - zp)
    let high = Float(Int32(Out.max) - zp)
    let (pixels, channels) = (self.pixels, self.channels)
    sums.withUnsafeMutableBufferPointer { acc in
      for n in 0..<batch {
        for c in 0..<channels { acc[c] = bias }
        let base = x + n * pixels * channels
        for p in 0..<pixels {
          let row = base + p * channels
          for c in 0..<channels { acc[c] &+= Int32(row[c]) }
        }
        for c in 0..<channels {
          let v = min(max(Float(acc[c]) * scale, low), high)
          y[n * channels + c] = Out(truncatingIfNeeded: Int32(v.rounded(.toNearestOrEven)) + zp)
        }
      }
    }
  }
}

/// onnxruntime's arithmetic for the QOperator ops QLinearAdd and QLinearMul on x86 (MLAS),
/// checked against onnxruntime on every pair of 8-bit codes
/// (Tests/ModelTests/QuantizedImportTests.swift):
///
/// ```
/// QLinearAdd: r_a = s_a / s_c, r_b = s_b / s_c, k = zp_c - (r_a·zp_a + r_b·zp_b)
///             y = fma(a, r_a, fma(b, r_b, k))       (one operand constant: fma(a, r_a, k + b·r_b))
/// QLinearMul: y = Float((a - zp_a)·(b - zp_b))·(s_a·s_b / s_c) + zp_c
/// q = saturate(round_half_even(y))
/// ```
///
/// with raw codes `a`, `b` converted to float32 and every operation rounded to float32. It
/// differs from the float definition `Q(DQ(a) ∘ DQ(b))` in the last bit often enough to flip
/// codes.
struct Int8QLinearArithmetic {
  let op: BinaryOperator
  let a: QuantParams
  let b: QuantParams
  let output: QuantParams
  /// Add: `s_a / s_c`, `s_b / s_c` and `k`; Mul: `s_a·s_b / s_c` in `ra` and `zp_c` in `k`.
  private let ra: Float
  private let rb: Float
  private let k: Float
  private let low: Float
  private let high: Float

  /// nil for ops other than Add and Mul.
  init?(_ op: BinaryOperator, a: QuantParams, b: QuantParams, output: QuantParams) {
    guard op == .add || op == .mul else { return nil }
    self.op = op
    self.a = a
    self.b = b
    self.output = output
    if op == .add {
      ra = a.scale / output.scale
      rb = b.scale / output.scale
      k = Float(output.zeroPoint) - (ra * Float(a.zeroPoint) + rb * Float(b.zeroPoint))
    } else {
      ra = a.scale * b.scale / output.scale
      rb = 0
      k = Float(output.zeroPoint)
    }
    low = Float(output.type.minimum)
    high = Float(output.type.maximum)
  }

  /// The output code of codes `x` (of `a`) and `y` (of `b`).
  @inline(__always)
  func code(_ x: Int32, _ y: Int32) -> Int32 {
    let t: Float
    if op == .add {
      t = Float(x).multipliedAdd(ra, Float(y).multipliedAdd(rb, k))
    } else {
      t = Float((x - a.zeroPoint) * (y - b.zeroPoint)) * ra + k
    }
    return Int32(min(max(t.rounded(.toNearestOrEven), low), high))
  }

  /// A table of the op with `b` fixed at code `y` (a QLinearAdd/QLinearMul with a constant
  /// operand), indexed by `x - a.type.minimum`. For Add the constant operand's term
  /// `k + b·r_b` is rounded once, as onnxruntime folds it.
  func table(fixed y: Int32) -> [Int32] {
    let folded = k + Float(y) * rb
    return (a.type.minimum...a.type.maximum).map { x in
      guard op == .add else { return code(Int32(x), y) }
      let t = Float(Int32(x)).multipliedAdd(ra, folded)
      return Int32(min(max(t.rounded(.toNearestOrEven), low), high))
    }
  }
}

extension Float {
  /// `self·m + c` with one rounding (fused multiply-add).
  @inline(__always)
  fileprivate func multipliedAdd(_ m: Float, _ c: Float) -> Float { c.addingProduct(self, m) }
}

/// onnxruntime's float32 arithmetic where a quantized model leaves values in float between
/// dequantise and quantise, so that code tables and re-evaluated elements round exactly as
/// onnxruntime does on x86 (MLAS with FMA3/AVX2 or AVX-512).
enum OnnxRuntimeArithmetic {
  /// MLAS's error function (`MlasErfKernelFma3`, the kernel onnxruntime's Erf runs on x86
  /// with FMA): a polynomial in `x²` below |x| = 0.921875, `1 - exp(-p(|x|))` above, |x|
  /// clamped to 3.925, every step a float32 fused multiply-add. It differs from the correctly
  /// rounded erf by one unit in the last place on about one value in ten, which is enough to
  /// move some codes of an exact-GELU island.
  static func erf(_ x: Float) -> Float {
    let a = min(abs(x), 3.925)
    let s = a * a
    var small: Float = -5.99104969e-4
    for p: Float in [4.99339588e-3, -2.67667342e-2, 1.12818025e-1, -3.76124859e-1, 1.28379151e-1] {
      small = fma(small, s, p)
    }
    small = fma(small, a, a)
    let isBig = 0.921875 <= a
    if isBig { small = 0 }
    // The large-argument branch runs on every lane; for small ones it sees 0 and yields 0.
    let b: Float = isBig ? a : 0
    var big: Float = 1.72948930e-5
    for p: Float in [
      -3.83208680e-4, 3.88393435e-3, -2.42545605e-2, 1.06777847e-1, 6.34846687e-1, 1.28717512e-1,
    ] {
      big = fma(big, b, p)
    }
    big = fma(big, b, b)
    let e = max(-big, -88.3762626647949)
    let c: Float = 1.25829120e+7
    let r = fma(1.44269504088896341, e, c) - c
    var f = fma(-6.93145752e-1, r, e)
    f = fma(r, -1.42860677e-6, f)
    var y: Float = 1.38319808e-3
    for p: Float in [8.37550033e-3, 4.16689515e-2, 1.66664466e-1, 4.99999851e-1, 1.0, 1.0] {
      y = fma(y, f, p)
    }
    // 2^r from the exponent bits (r is an integer here: the FMA with 1.5·2²³ rounded it).
    let power = Float(bitPattern: UInt32(bitPattern: (Int32(r) &+ 127) << 23))
    y = 1 - y * power
    let bits = y.bitPattern | small.bitPattern | (x.bitPattern & 0x8000_0000)
    return Float(bitPattern: bits)
  }

  /// `a·b + c` rounded once.
  @inline(__always)
  static func fma(_ a: Float, _ b: Float, _ c: Float) -> Float { c.addingProduct(a, b) }
}

/// One convolution of a QDQ model that onnxruntime's optimised graph runs in float32
/// (`DequantizeLinear → Conv → QuantizeLinear` it does not fuse, see
/// `QuantizedImport.onnxRuntimeFloatConvolutions`): the float output of one element computed
/// in exactly MLAS's order, so that the engine can round the few elements that lie next to a
/// rounding boundary the way onnxruntime does.
///
/// MLAS computes such a convolution as SGEMM (im2col unless it is 1×1 with stride 1): every
/// output element is `bias + Σ dq(w)·dq(x)` over the reduction index `k = (c, ky, kx)`,
/// accumulated with fused multiply-adds in `k` order within blocks of `strideK` (blocks added
/// one after another), except when the output has one pixel, where its matrix-vector kernel
/// runs over all of `k` with eight partial sums (`k mod 8`, multiply then add) and reduces
/// them in an order that depends on the channel's position in groups of four. The block size follows
/// `MlasSgemmOperation`/`MlasConvOperation` for a whole image (onnxruntime's batches of more
/// than one image run each image's GEMM on one thread). Checked bit for bit against
/// onnxruntime's Conv outputs (scripts/reference/ort_qdq_float.py, OnnxRuntimeFloatTests).
final class OnnxRuntimeFloatConvolution {
  private let weights: [Float]
  private let bias: [Float]
  /// The dequantised value of every input code, indexed by the code's byte.
  private let dequantized: [Float]
  private let geometry: Conv2DGeometry
  private let outputSize: (height: Int, width: Int)
  private let reduction: Int
  private let strideK: Int
  private let source: UnsafePointer<UInt8>
  /// Per reduction index: its NHWC offset from the window's first input element, and its
  /// (row, column, channel) offsets for windows that reach into the padding.
  private let kernelOffsets: [Int]
  private let kernelTaps: [(Int, Int, Int)]
  /// One im2col column per thread (the re-evaluated element's dequantised inputs).
  private let columns: UnsafeMutablePointer<Float>
  /// How many threads may call `value(at:thread:)` at once (`thread` below this).
  let threads: Int
  /// MLAS's blocked sums by FMA instructions (the Swift of this module is built for baseline
  /// x86-64, where `addingProduct` is a libm call).
  private static let sumsInC = ie_int8_has_avx2_fma() != 0

  /// Nil when the convolution is not one this emulation covers (grouped, or weights and bias
  /// that are not the model's codes).
  init?(
    geometry: Conv2DGeometry, input: QuantParams, weights codes: [Int8], weightScales: [Float],
    bias biasCodes: [Int32]?, biasScales: [Float]?, source: UnsafeRawPointer
  ) {
    let g = geometry
    guard g.groups == 1, input.isPerTensor, input.type == .int8 || input.type == .uint8 else {
      return nil
    }
    let (o, i, kh, kw) = (g.outputChannels, g.inputChannels, g.kernelHeight, g.kernelWidth)
    let k = i * kh * kw
    guard codes.count == o * k, weightScales.count == 1 || weightScales.count == o else {
      return nil
    }
    if let biasCodes {
      guard let biasScales, biasCodes.count == o, biasScales.count == 1 || biasScales.count == o
      else { return nil }
      bias = (0..<o).map { Float(biasCodes[$0]) * biasScales[biasScales.count == 1 ? 0 : $0] }
    } else {
      bias = [Float](repeating: 0, count: o)
    }
    // DequantizeLinear of the weights, in MLAS's reduction order (c, ky, kx) from OHWI codes.
    var w = [Float](repeating: 0, count: o * k)
    for oc in 0..<o {
      let scale = weightScales[weightScales.count == 1 ? 0 : oc]
      for c in 0..<i {
        for y in 0..<kh {
          for x in 0..<kw {
            w[oc * k + (c * kh + y) * kw + x] =
              Float(Int32(codes[((oc * kh + y) * kw + x) * i + c])) * scale
          }
        }
      }
    }
    weights = w
    dequantized = (0..<256).map { byte in
      let code = input.type == .int8 ? Int32(Int8(truncatingIfNeeded: byte)) : Int32(byte)
      return Float(code - input.zeroPoint) * input.scale
    }
    let outputHeight =
      (g.inputHeight + g.pads.top + g.pads.bottom - (g.dilations.height * (kh - 1) + 1))
      / g.strides.height + 1
    let outputWidth =
      (g.inputWidth + g.pads.left + g.pads.right - (g.dilations.width * (kw - 1) + 1))
      / g.strides.width + 1
    outputSize = (outputHeight, outputWidth)
    self.geometry = g
    reduction = k
    // MLAS_SGEMM_STRIDEN/STRIDEK = 128, widened along K when a slice of N is narrower.
    let n = outputHeight * outputWidth
    var (strideN, strideK) = (128, 128)
    if n >= k {
      while strideK / 2 >= k {
        strideN *= 2
        strideK /= 2
      }
    } else {
      while strideN > 16, strideN / 2 >= n {
        strideK *= 2
        strideN /= 2
      }
    }
    self.strideK = strideK
    self.source = source.assumingMemoryBound(to: UInt8.self)
    var taps: [(Int, Int, Int)] = []
    for c in 0..<i {
      for y in 0..<kh {
        for x in 0..<kw { taps.append((y * g.dilations.height, x * g.dilations.width, c)) }
      }
    }
    kernelTaps = taps
    kernelOffsets = taps.map { ($0.0 * g.inputWidth + $0.1) * i + $0.2 }
    threads = KernelTeam.availableThreads
    columns = UnsafeMutablePointer<Float>.allocate(capacity: max(k, 1) * threads)
    columns.initialize(repeating: 0, count: max(k, 1) * threads)
  }

  deinit { columns.deallocate() }

  /// onnxruntime's float32 Conv output (before QuantizeLinear) at `index` of the NHWC output,
  /// computed with the column buffer of `thread` (threads may evaluate elements concurrently).
  func value(at index: Int, thread: Int = 0) -> Float {
    let g = geometry
    let channels = g.outputChannels
    let pixels = outputSize.height * outputSize.width
    let oc = index % channels
    let pixel = (index / channels) % pixels
    let image = index / (channels * pixels)
    let top = (pixel / outputSize.width) * g.strides.height - g.pads.top
    let left = (pixel % outputSize.width) * g.strides.width - g.pads.left
    let (height, width, inputChannels) = (g.inputHeight, g.inputWidth, g.inputChannels)
    let inside =
      top >= 0 && left >= 0 && top + (g.kernelHeight - 1) * g.dilations.height < height
      && left + (g.kernelWidth - 1) * g.dilations.width < width
    let imageBase = image * height * width
    let xs = columns + thread * max(reduction, 1)
    // The element's im2col column: dequantised NHWC codes (an NCHW tensor with one pixel or
    // one channel has the same offsets), 0 in the padding.
    dequantized.withUnsafeBufferPointer { table in
      kernelOffsets.withUnsafeBufferPointer { offsets in
        if inside {
          let base = source + (imageBase + top * width + left) * inputChannels
          for k in 0..<reduction { xs[k] = table[Int(base[offsets[k]])] }
        } else {
          for k in 0..<reduction {
            let (dy, dx, c) = kernelTaps[k]
            let (iy, ix) = (top + dy, left + dx)
            xs[k] =
              iy >= 0 && iy < height && ix >= 0 && ix < width
              ? table[Int(source[(imageBase + iy * width + ix) * inputChannels + c])] : 0
          }
        }
      }
    }
    return weights.withUnsafeBufferPointer { w in
      let row = w.baseAddress! + oc * reduction
      // One output pixel: one matrix-vector call over all of K; otherwise K blocks.
      if pixels == 1 { return matrixVector(row, xs, channel: oc) + bias[oc] }
      if Self.sumsInC {
        return ie_float_mlas_blocked_dot_fma(row, xs, reduction, strideK) + bias[oc]
      }
      var sum: Float = 0
      var start = 0
      while start < reduction {
        let end = min(reduction, start + strideK)
        var acc: Float = 0
        for k in start..<end { acc = OnnxRuntimeArithmetic.fma(row[k], xs[k], acc) }
        sum = start == 0 ? acc : acc + sum
        start = end
      }
      return sum + bias[oc]
    }
  }

  /// `MlasSgemmKernelM1TransposeBAvx` for one output channel: eight lanes of `k mod 8`,
  /// each `lane + w·x` (separately rounded), reduced as the kernel reduces its rows of four,
  /// two or one.
  private func matrixVector(
    _ row: UnsafePointer<Float>, _ x: UnsafeMutablePointer<Float>, channel: Int
  ) -> Float {
    var l = SIMD8<Float>()
    for k in 0..<reduction { l[k & 7] += row[k] * x[k] }
    let channels = geometry.outputChannels
    let fours = channels - channels % 4
    if channel < fours {
      return (((l[0] + l[1]) + l[2]) + l[3]) + (((l[4] + l[5]) + l[6]) + l[7])
    }
    if channels % 4 >= 2, channel < fours + 2 {
      return ((l[0] + l[2]) + (l[4] + l[6])) + ((l[1] + l[3]) + (l[5] + l[7]))
    }
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
  }
}

/// The int8 codes of a convolution's source as uint8 codes 128 higher (`u = s + 128`, the sign
/// bit flipped), for oneDNN's VNNI kernels: they multiply unsigned by signed bytes, and a
/// signed source costs them a shift and a compensation of their own, 17–23 % of the time of
/// the 1×1 convolutions that read EfficientNet's and FasterNet's signed codes (C harness,
/// bench/README.md, "Session 10"). The accumulator is exact either way: the convolution's
/// bias takes `−128 · Σ w` per output channel (`biasFolding(sourceZeroPoint: 128, …)`: the
/// shifted codes are codes with zero point 128), which is exact only without
/// padding (a padded tap would read 0, not 128), and used only while `128 · 127` times the
/// weights per output channel fits easily in int32 (`maximumWeightsPerOutput`).
final class Int8SignShift {
  /// Whether the int8 engine uses the shift; `IMAGENET_EVAL_INT8_SIGN_SHIFT=0` keeps oneDNN's
  /// signed source, for A/B measurements.
  static let isEnabled = ProcessInfo.processInfo.environment["IMAGENET_EVAL_INT8_SIGN_SHIFT"] != "0"

  /// Weights per output channel up to which the shifted accumulator, at most
  /// `255 · 127` per weight, stays below 2³¹ with a margin of 4 (FasterNet-S's largest is 2048).
  static let maximumWeightsPerOutput = 16_384

  private let source: UnsafeRawPointer
  /// The shifted codes, read by the convolution.
  let buffer: UnsafeMutableRawPointer
  private let count: Int

  init(source: UnsafeRawPointer, count: Int) {
    self.source = source
    self.count = count
    buffer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    buffer.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
  }

  deinit { buffer.deallocate() }

  func run() { Self.flip(source, to: buffer, count: count) }

  /// Writes `count` bytes of `source` with their top bit flipped to `destination` (which may
  /// be `source`): int8 codes with zero point 0 to uint8 codes with zero point 128, and back.
  static func flip(_ source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer, count: Int)
  {
    let words = count / 8
    let threads = KernelTeam.threads(forBytes: count)
    KernelTeam.forEachRange(words, threads: threads) { range in
      let from = source.assumingMemoryBound(to: UInt64.self)
      let to = destination.assumingMemoryBound(to: UInt64.self)
      for word in range { to[word] = from[word] ^ 0x8080_8080_8080_8080 }
    }
    for byte in (words * 8)..<count {
      destination.storeBytes(
        of: source.load(fromByteOffset: byte, as: UInt8.self) ^ 0x80, toByteOffset: byte,
        as: UInt8.self)
    }
  }
}
