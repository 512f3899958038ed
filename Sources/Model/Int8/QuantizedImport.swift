import Foundation

/// Weight and bias codes taken from a quantized model, in the layouts `Int8Lowering` feeds its
/// kernels (OHWI for convolutions, `[n, k]` for Gemms), keyed by node name.
struct ExplicitQuantization {
  /// int8 weight codes (zero point 0) and their scales, one per output channel or one.
  var weights: [String: (codes: [Int8], params: QuantParams)] = [:]
  /// int32 bias codes in accumulator units (`s_in * s_w[oc]`).
  var biases: [String: [Int32]] = [:]
  /// The scales of `biases` as the model's DequantizeLinear holds them (one per channel).
  var biasScales: [String: [Float]] = [:]
  /// Convolutions that onnxruntime's optimised graph leaves in float32 (see
  /// `QuantizedImport.onnxRuntimeFloatConvolutions`): their elements next to a rounding
  /// boundary are rounded from onnxruntime's float sum (`OnnxRuntimeFloatConvolution`).
  var onnxRuntimeFloatConvolutions: Set<String> = []
  /// Add/Mul nodes that were QOperator `QLinearAdd`/`QLinearMul` ops: they compute with
  /// onnxruntime's integer-input arithmetic (`Int8QLinearArithmetic`), not as float ops
  /// between dequantise and quantise.
  var qlinearNodes: Set<String> = []
  /// One-element quantised constants (a QLinearAdd's `1`, a QLinearMul's `0.5`): their code
  /// and parameters, keyed by the constant's (dequantised) value.
  var scalarCodes: [ValueID: (code: Int32, params: QuantParams)] = [:]
}

extension Graph {
  /// True when the model is already quantized: it holds QuantizeLinear/DequantizeLinear nodes
  /// (QDQ format) or QOperator ops such as QLinearConv, which `ONNXLoader` loads as their QDQ
  /// equivalent. Run such a model with `Int8Engine(quantizedGraph:batchSize:threads:)`, which
  /// takes its scales, zero points and codes from the model instead of calibrating.
  public var isQuantized: Bool {
    nodes.contains {
      switch $0.op {
      case .quantizeLinear, .dequantizeLinear: true
      default: false
      }
    }
  }
}

extension Int8Engine {
  /// Runs a quantized model (QDQ or QOperator, see `Graph.isQuantized`) with the parameters
  /// it holds: activation scales and zero points (int8 or uint8) from its QuantizeLinear
  /// nodes, weight codes with their per-channel scales and int32 bias codes bit for bit
  /// from its DequantizeLinear nodes. Convolutions, Gemms (and 2-D MatMuls with constant
  /// weights) requantise as onnxruntime does, `saturate(round_half_even(acc·(s_x·s_w/s_y)) +
  /// z_y)`; Adds, global average pooling, max pooling and sigmoid run on codes; everything
  /// else runs in float between dequantise and quantise and is listed in
  /// `floatFallbackNodes`. Values the model keeps in float stay float. When the model
  /// quantises its output, the engine returns those codes dequantised.
  ///
  /// Where onnxruntime's optimised graph of a QDQ model computes in float32 instead (Convs on
  /// int8 codes that have more than one reader, Erf), the engine rounds as onnxruntime does
  /// on x86: MLAS's erf in elementwise tables, and MLAS's SGEMM summation order for the
  /// elements of such a Conv that lie next to a rounding boundary (onnxruntime run on batches
  /// of more than one image; see `OnnxRuntimeFloatConvolution`).
  ///
  /// Throws when a scale is zero, negative or not finite (naming the node and tensor), when a
  /// DequantizeLinear reads codes no QuantizeLinear produced (integer model inputs), or when
  /// a tensor is quantised twice with different parameters.
  public convenience init(quantizedGraph: Graph, batchSize: Int, threads: Int? = nil) throws {
    try self.init(
      quantizedGraph: quantizedGraph, batchSize: batchSize, threads: threads, shards: nil)
  }

  /// `shards` overrides the batch shard count (1: unsharded; nil: one per thread, see
  /// `BatchShards`).
  convenience init(quantizedGraph: Graph, batchSize: Int, threads: Int?, shards: Int?) throws {
    guard batchSize > 0 else {
      throw ModelError(.invalidGraph, "int8 engine: batch size must be positive, got \(batchSize)")
    }
    let imported = try QuantizedImport(quantizedGraph, batchSize: batchSize)
    let calibration = Int8Calibration(
      method: .max, thresholds: [:], minimums: [:], maximums: [:], imageCount: 0,
      requestedImageCount: 0)
    try self.init(
      prepared: imported.graph, params: imported.params, explicit: imported.explicit,
      calibration: calibration, settings: Int8Settings(floatNodes: imported.floatNodes),
      threads: threads, description: "none (parameters from the quantized model)",
      shards: shards
    ) { size in
      let shard = try QuantizedImport(quantizedGraph, batchSize: size)
      return (shard.graph, shard.params, shard.explicit)
    }
  }
}

/// Turns a quantized graph into what `Int8Lowering` consumes: the float graph with its
/// QuantizeLinear/DequantizeLinear nodes absorbed, the activation parameters per value, and
/// the model's weight and bias codes.
///
/// A `Q(x) → q → DQ(q) → y` pair makes `x` a quantized value (the engine holds it as codes
/// with Q's parameters) and `y` an alias of `x`. A DQ of a constant is folded to its float
/// value for the float paths, and its codes are kept for the integer kernels. Ops that only
/// move codes (max pooling, reshapes, Split, Concat of equal parameters) carry their
/// input's parameters, which is what QOperator models apply them to directly.
struct QuantizedImport {
  var graph: Graph
  var params: [ValueID: QuantParams] = [:]
  var explicit = ExplicitQuantization()
  /// Conv/Gemm nodes whose weights the model does not quantize in a form the kernels take
  /// (float weights, nonzero weight zero points beyond int8, other per-channel axes): they
  /// run in float, as the model defines them.
  var floatNodes: Set<String> = []

  /// A constant DequantizeLinear's codes and parameters.
  private struct ConstantCodes {
    var codes: [Int64]
    var shape: [Int]
    var type: ElementType
    var scales: [Float]
    var zeroPoints: [Int64]
    /// The channel axis (non-negative) when there is more than one scale.
    var axis: Int?
  }

  init(_ original: Graph, batchSize: Int) throws {
    var g = try GraphPasses.inferShapes(
      original, batchSize: batchSize, preservingQuantization: true)
    let signedKept = Self.signedQuantizedValues(g)
    var alias: [ValueID: ValueID] = [:]
    var floatOf: [ValueID: ValueID] = [:]
    var constantCodes: [ValueID: ConstantCodes] = [:]
    var params: [ValueID: QuantParams] = [:]
    var kept: [Node] = []
    for original in g.nodes {
      var node = original
      node.inputs = node.inputs.map { alias[$0] ?? $0 }
      switch node.op {
      case .quantizeLinear(let axis):
        let x = node.inputs[0]
        let p = try Self.parameters(node, g, codesType: g.values[node.outputs[0]].elementType)
        if g.constants[x] != nil {
          let folded = try ReferenceEvaluator.evaluate(node, try Self.constants(node, g))
          g.constants[node.outputs[0]] = folded[0]
          continue
        }
        guard p.scales.count == 1 else {
          throw ModelError(
            .unsupportedOperators,
            "node '\(node.name)' (QuantizeLinear): per-channel (axis \(axis)) activation quantisation is not supported"
          )
        }
        let qp = try Self.quantParams(p, node: node, g)
        if let existing = params[x], existing != qp {
          throw ModelError(
            .unsupportedOperators,
            "node '\(node.name)' (QuantizeLinear): tensor '\(g.values[x].name)' is quantised twice with different parameters"
          )
        }
        params[x] = qp
        floatOf[node.outputs[0]] = x
      case .dequantizeLinear(let axis):
        let q = node.inputs[0]
        let p = try Self.parameters(node, g, codesType: g.values[q].elementType)
        if let codes = g.constants[q] {
          guard let integers = codes.integers else {
            throw ModelError(
              .invalidTensor,
              "node '\(node.name)' (DequantizeLinear): input '\(g.values[q].name)' is not integer")
          }
          let rank = codes.shape.count
          let folded = try ReferenceEvaluator.evaluate(node, try Self.constants(node, g))
          let out = node.outputs[0]
          g.constants[out] = folded[0]
          g.values[out].elementType = .float32
          g.values[out].shape = folded[0].shape
          constantCodes[out] = ConstantCodes(
            codes: integers, shape: codes.shape, type: codes.elementType, scales: p.scales,
            zeroPoints: p.zeroPoints,
            axis: p.scales.count > 1 ? (axis < 0 ? axis + rank : axis) : nil)
          continue
        }
        guard let x = floatOf[q], let px = params[x] else {
          throw ModelError(
            .unsupportedOperators,
            "node '\(node.name)' (DequantizeLinear): reads '\(g.values[q].name)', which no QuantizeLinear produced (integer model inputs are not supported)"
          )
        }
        guard p.scales.count == 1 else {
          throw ModelError(
            .unsupportedOperators,
            "node '\(node.name)' (DequantizeLinear): per-channel dequantisation of activations is not supported"
          )
        }
        let dp = try Self.quantParams(p, node: node, g)
        if dp == px {
          alias[node.outputs[0]] = x
          continue
        }
        // Other parameters than the codes were made with (ConvInteger's unit scale):
        // y = (q - zp2)·s2 = x·(s2/s1) + (zp1 - zp2)·s2, computed in float.
        kept.append(
          contentsOf: Self.rescale(
            x, from: px, to: dp, output: node.outputs[0], name: node.name, graph: &g))
      default:
        if node.inputs.contains(where: { floatOf[$0] != nil }) {
          guard Self.movesCodes(node.op) else {
            throw ModelError(
              .unsupportedOperators,
              "node '\(node.name)' (\(node.op.name)) computes on quantised codes directly; only ops that move codes can"
            )
          }
          let inputs = node.inputs.map { floatOf[$0] ?? $0 }
          let dataParams = inputs.compactMap { params[$0] }
          guard let first = dataParams.first, dataParams.allSatisfy({ $0 == first }) else {
            throw ModelError(
              .unsupportedOperators,
              "node '\(node.name)' (\(node.op.name)) combines codes of different quantisation parameters"
            )
          }
          node.inputs = inputs
          // The op now moves the float value the codes stand for; its codes outputs stay
          // codes (read only through DequantizeLinear or other such ops).
          node.outputs = node.outputs.map { out in
            let moved = g.addValue(
              Value(
                name: "\(g.values[out].name)/float", elementType: .float32,
                shape: g.values[out].shape))
            params[moved] = first
            floatOf[out] = moved
            return moved
          }
        }
        kept.append(node)
      }
    }
    g.nodes = kept
    // `GraphBuilder.addQuantizedOperator` writes a QOperator op's float output as
    // "<node name>/float_output"; QLinearAdd/QLinearMul keep onnxruntime's arithmetic.
    for node in kept where node.outputs.count == 1 {
      switch node.op {
      case .binary(.add), .binary(.mul):
        if g.values[node.outputs[0]].name == "\(node.name)/float_output" {
          explicit.qlinearNodes.insert(node.name)
        }
      default: break
      }
    }
    // onnxruntime fuses a QDQ `DequantizeLinear ×2 → Add → QuantizeLinear` on uint8 codes
    // into QLinearAdd (as it does for the engine's own QDQ export); it runs int8 ones in float.
    for node in kept where node.op == .binary(.add) && node.outputs.count == 1 {
      guard node.inputs.count == 2,
        node.inputs.allSatisfy({ g.constants[$0] == nil && params[$0]?.type == .uint8 }),
        params[node.outputs[0]]?.type == .uint8
      else { continue }
      explicit.qlinearNodes.insert(node.name)
    }
    for (id, c) in constantCodes where c.codes.count == 1 && c.scales.count == 1 {
      let type: QuantizedType
      switch c.type {
      case .int8: type = .int8
      case .uint8: type = .uint8
      default: continue
      }
      if let p = try? QuantParams(
        type: type, scale: c.scales[0], zeroPoint: Int32(truncatingIfNeeded: c.zeroPoints[0]))
      {
        explicit.scalarCodes[id] = (Int32(truncatingIfNeeded: c.codes[0]), p)
      }
    }
    // onnxruntime's optimised graph fuses a QDQ Conv into QLinearConv only on uint8
    // activations; int8 codes it converts to uint8 only where their QuantizeLinear has one
    // consumer (QDQS8ToU8Transformer after EnsureUniqueDQForNodeUnit), so a Conv reading or
    // writing int8 codes shared by two nodes runs DequantizeLinear → Conv → QuantizeLinear
    // in float32 (EfficientNet-Lite0: the convolutions next to its residual Adds; FasterNet:
    // those next to the partial-convolution Concat, the residual Adds and the GELUs).
    for node in kept where node.outputs.count == 1 {
      guard case .conv(let c) = node.op, c.postOps.isEmpty,
        g.values[node.outputs[0]].name != "\(node.name)/float_output",
        let input = params[node.inputs[0]], let output = params[node.outputs[0]],
        input.type == .int8 || output.type == .int8,
        signedKept.contains(node.inputs[0]) || signedKept.contains(node.outputs[0])
      else { continue }
      explicit.onnxRuntimeFloatConvolutions.insert(node.name)
    }
    g.outputs = g.outputs.map { floatOf[alias[$0] ?? $0] ?? alias[$0] ?? $0 }
    g = Self.matMulsAsGemms(g)
    g = Self.fuseClamps(g, params: params)
    g = GraphPasses.eliminateDeadNodes(g)
    graph = g
    self.params = params.filter { id, _ in g.constants[id] == nil }
    try takeWeights(constantCodes)
  }

  /// The float values whose int8 QuantizeLinear onnxruntime leaves int8: its codes reach more
  /// than one consumer (counting every reader of each DequantizeLinear of them, as
  /// onnxruntime gives each its own DequantizeLinear), or a graph output.
  private static func signedQuantizedValues(_ g: Graph) -> Set<ValueID> {
    var readers: [ValueID: Int] = [:]
    for node in g.nodes {
      for input in node.inputs { readers[input, default: 0] += 1 }
    }
    for output in g.outputs { readers[output, default: 0] += 1 }
    var dequantized: [ValueID: [ValueID]] = [:]
    for node in g.nodes {
      if case .dequantizeLinear = node.op {
        dequantized[node.inputs[0], default: []].append(node.outputs[0])
      }
    }
    var result = Set<ValueID>()
    for node in g.nodes {
      guard case .quantizeLinear = node.op, g.constants[node.inputs[0]] == nil,
        g.values[node.outputs[0]].elementType == .int8
      else { continue }
      let codes = node.outputs[0]
      let viaDequantize = (dequantized[codes] ?? []).reduce(0) { $0 + (readers[$1] ?? 0) }
      let direct = (readers[codes] ?? 0) - (dequantized[codes]?.count ?? 0)
      if viaDequantize + direct != 1 { result.insert(node.inputs[0]) }
    }
    return result
  }

  /// The node's inputs, all constant (checked).
  private static func constants(_ node: Node, _ g: Graph) throws -> [Tensor] {
    try node.inputs.map { id in
      guard let t = g.constants[id] else {
        throw ModelError(
          .invalidNode,
          "node '\(node.name)' (\(node.op.name)): '\(g.values[id].name)' is not constant")
      }
      return t
    }
  }

  /// Ops whose output codes are input codes moved around (valid with the input's parameters).
  private static func movesCodes(_ op: Op) -> Bool {
    switch op {
    case .maxPool, .flatten, .reshape, .squeeze, .unsqueeze, .identity, .transpose, .split,
      .slice, .concat, .gather:
      true
    default: false
    }
  }

  /// Scales and zero points of a Q/DQ node, checked: every scale positive and finite.
  private static func parameters(_ node: Node, _ g: Graph, codesType: ElementType) throws -> (
    scales: [Float], zeroPoints: [Int64], type: ElementType
  ) {
    let context = "node '\(node.name)' (\(node.op.name))"
    guard node.inputs.count >= 2 else {
      throw ModelError(.invalidNode, "\(context): expects a scale input")
    }
    let scaleName = g.values[node.inputs[1]].name
    guard let scales = g.constants[node.inputs[1]]?.floats, !scales.isEmpty else {
      throw ModelError(
        .invalidNode, "\(context): scale '\(scaleName)' must be a float32 constant")
    }
    for (index, scale) in scales.enumerated() where !(scale.isFinite && scale > 0) {
      throw ModelError(
        .invalidNode,
        "\(context): scale tensor '\(scaleName)' holds \(scale) at element \(index); quantisation scales must be positive and finite"
      )
    }
    var zeroPoints = [Int64](repeating: 0, count: 1)
    var type = codesType
    if node.inputs.count > 2 {
      guard let zp = g.constants[node.inputs[2]], let values = zp.integers else {
        throw ModelError(
          .invalidNode,
          "\(context): zero point '\(g.values[node.inputs[2]].name)' must be an integer constant")
      }
      zeroPoints = values
      type = zp.elementType
    }
    guard zeroPoints.count == 1 || zeroPoints.count == scales.count else {
      throw ModelError(
        .invalidNode,
        "\(context): \(scales.count) scales but \(zeroPoints.count) zero points")
    }
    return (scales, zeroPoints, type)
  }

  /// Per-tensor activation parameters of an int8/uint8 Q/DQ node.
  private static func quantParams(
    _ p: (scales: [Float], zeroPoints: [Int64], type: ElementType), node: Node, _ g: Graph
  ) throws -> QuantParams {
    let type: QuantizedType
    switch p.type {
    case .int8: type = .int8
    case .uint8: type = .uint8
    default:
      throw ModelError(
        .unsupportedOperators,
        "node '\(node.name)' (\(node.op.name)): \(p.type.rawValue) activation codes are not supported"
      )
    }
    do {
      return try QuantParams(type: type, scale: p.scales[0], zeroPoint: Int32(p.zeroPoints[0]))
    } catch {
      throw ModelError(.invalidNode, "node '\(node.name)' (\(node.op.name)): \(error)")
    }
  }

  /// Float nodes computing `y = x·(s2/s1) + (zp1 - zp2)·s2`, the dequantisation with `to` of
  /// codes made with `from`.
  private static func rescale(
    _ x: ValueID, from: QuantParams, to: QuantParams, output: ValueID, name: String,
    graph g: inout Graph
  ) -> [Node] {
    let ratio = g.addConstant(
      name: "\(name)/rescale", Tensor(shape: [], floats: [to.scale / from.scale]))
    let offset = Float(from.zeroPoint - to.zeroPoint) * to.scale
    g.values[output].elementType = .float32
    guard offset != 0 else {
      return [Node(name: name, op: .binary(.mul), inputs: [x, ratio], outputs: [output])]
    }
    let scaled = g.addValue(
      Value(name: "\(name)/scaled", elementType: .float32, shape: g.values[output].shape))
    let shift = g.addConstant(name: "\(name)/offset", Tensor(shape: [], floats: [offset]))
    return [
      Node(name: "\(name)/scale", op: .binary(.mul), inputs: [x, ratio], outputs: [scaled]),
      Node(name: name, op: .binary(.add), inputs: [scaled, shift], outputs: [output]),
    ]
  }

  /// 2-D MatMuls with constant weights become Gemms (the int8 inner product).
  private static func matMulsAsGemms(_ graph: Graph) -> Graph {
    var g = graph
    for (index, node) in g.nodes.enumerated() where node.op == .matMul {
      guard let b = g.constants[node.inputs[1]], b.shape.count == 2,
        g.values[node.inputs[0]].shape?.count == 2
      else { continue }
      g.nodes[index].op = .gemm(Gemm())
    }
    return g
  }

  /// Fuses a ReLU/Clip into the Conv/Gemm before it when the value between them is float in
  /// the model (not quantized), so the fusion changes no rounding.
  private static func fuseClamps(_ graph: Graph, params: [ValueID: QuantParams]) -> Graph {
    var g = graph
    let consumers = g.consumers()
    let producers = g.producers()
    var removed = Set<Int>()
    for (index, node) in g.nodes.enumerated() {
      guard case .activation(let activation) = node.op else { continue }
      switch activation {
      case .relu, .clip: break
      default: continue
      }
      let x = node.inputs[0]
      guard let p = producers[x], consumers[x] == [index], params[x] == nil,
        !g.outputs.contains(x)
      else { continue }
      switch g.nodes[p].op {
      case .conv(var c) where c.postOps.isEmpty:
        c.postOps = [.activation(activation)]
        g.nodes[p].op = .conv(c)
      case .gemm(var m) where m.postOps.isEmpty:
        m.postOps = [.activation(activation)]
        g.nodes[p].op = .gemm(m)
      default: continue
      }
      g.nodes[p].outputs = node.outputs
      removed.insert(index)
    }
    g.nodes = g.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    return g
  }

  /// Records each Conv/Gemm's weight and bias codes in kernel layout, or marks the node float.
  private mutating func takeWeights(_ constantCodes: [ValueID: ConstantCodes]) throws {
    for node in graph.nodes {
      switch node.op {
      case .conv, .gemm: break
      default: continue
      }
      guard let weights = constantCodes[node.inputs[1]],
        let (codes, scales, channels) = try kernelWeights(node, weights)
      else {
        floatNodes.insert(node.name)
        continue
      }
      let weightParams = try QuantParams(
        type: .int8, scales: scales, zeroPoints: [Int32](repeating: 0, count: scales.count),
        axis: scales.count > 1 ? 0 : nil)
      explicit.weights[node.name] = (codes, weightParams)
      let biasInput: ValueID?
      switch node.op {
      case .conv: biasInput = node.convolutionBias
      case .gemm(let m): biasInput = m.beta == 1 && node.inputs.count > 2 ? node.inputs[2] : nil
      default: biasInput = nil
      }
      guard let b = biasInput, let bias = constantCodes[b], bias.type == .int32,
        bias.zeroPoints.allSatisfy({ $0 == 0 }), let inputScale = params[node.inputs[0]]?.scale,
        bias.codes.count == channels
      else { continue }
      // The codes are the model's only if they are in accumulator units; otherwise the
      // lowering quantises the real bias (what the model's float definition adds).
      let matches = bias.codes.indices.allSatisfy { oc in
        let expected = inputScale * scales[scales.count == 1 ? 0 : oc]
        let actual = bias.scales[bias.scales.count == 1 ? 0 : oc]
        return abs(actual - expected) <= 1e-6 * expected
      }
      if matches {
        explicit.biases[node.name] = bias.codes.map { Int32(truncatingIfNeeded: $0) }
        explicit.biasScales[node.name] = (0..<channels).map {
          bias.scales[bias.scales.count == 1 ? 0 : $0]
        }
      }
    }
  }

  /// Weight codes (zero point removed, int8) in the kernel's layout with their scales, or nil
  /// when the model's weights do not fit the int8 kernels.
  private func kernelWeights(_ node: Node, _ w: ConstantCodes) throws -> (
    [Int8], [Float], Int
  )? {
    var scales = w.scales
    let channels: Int
    let channelAxis: Int
    switch node.op {
    case .conv:
      guard w.shape.count == 4 else { return nil }
      channels = w.shape[0]
      channelAxis = 0
    case .gemm(let m):
      guard w.shape.count == 2, !m.transA, m.alpha > 0, m.alpha.isFinite else { return nil }
      channelAxis = m.transB ? 0 : 1
      channels = w.shape[channelAxis]
      if m.alpha != 1 { scales = scales.map { $0 * m.alpha } }
    default: return nil
    }
    if scales.count > 1 {
      guard w.axis == channelAxis, scales.count == channels else { return nil }
    }
    // Codes relative to their zero point must be int8 for the kernels' s8 weights.
    let perChannel = w.codes.count / channels
    var centred = [Int8](repeating: 0, count: w.codes.count)
    for index in w.codes.indices {
      let channel: Int
      if w.zeroPoints.count == 1 {
        channel = 0
      } else if channelAxis == 0 {
        channel = index / perChannel
      } else {
        channel = index % channels
      }
      guard let code = Int8(exactly: w.codes[index] - w.zeroPoints[channel]) else { return nil }
      centred[index] = code
    }
    switch node.op {
    case .conv:
      let ohwi = Int8Layout.ohwi(
        centred, o: w.shape[0], i: w.shape[1], kh: w.shape[2], kw: w.shape[3])
      return (ohwi, scales, channels)
    case .gemm(let m) where !m.transB:
      let (k, n) = (w.shape[0], w.shape[1])
      var rows = [Int8](repeating: 0, count: centred.count)
      for row in 0..<n {
        for column in 0..<k { rows[row * k + column] = centred[column * n + row] }
      }
      return (rows, scales, channels)
    default:
      return (centred, scales, channels)
    }
  }
}
