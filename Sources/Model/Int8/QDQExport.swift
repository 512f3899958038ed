import Foundation
import SwiftProtobuf

extension Int8Engine {
  /// The default-domain opset of exported QDQ models (per-channel `DequantizeLinear` needs 13,
  /// `Gelu` 20, int16 codes 21).
  public static let qdqOpset = 21

  /// This engine's calibrated model as a standard QDQ ONNX model (serialised `ModelProto`),
  /// computing what the engine computes, so that onnxruntime and other QDQ consumers can run
  /// it.
  ///
  /// The model is the prepared graph (BatchNorm folded into the convolutions) with its fused
  /// post-ops written back as separate ONNX ops (`Conv → Add → Relu`), and:
  /// * `QuantizeLinear → DequantizeLinear` with the engine's per-tensor parameters on every
  ///   activation the engine holds as codes: the input and every node output, except float
  ///   logits the last Conv/Gemm or a float-fallback node writes directly. int8 codes are
  ///   written as uint8 with the zero point + 128 (the same real values), on which
  ///   onnxruntime runs every quantised Conv as QLinearConv and every residual Add as
  ///   QLinearAdd; the engine computes those ops exactly as onnxruntime does, so the file
  ///   reproduces the engine's codes (Tests/ModelTests/QDQExportRealModelTests.swift);
  /// * int8 weights of every quantised Conv/Gemm (the codes its kernel runs with) behind a
  ///   per-output-channel `DequantizeLinear` (axis 0; a Gemm's weights are `[n, k]` with
  ///   `transB = 1` and alpha folded in), and its int32 bias behind a `DequantizeLinear`
  ///   with scale `s_in · s_w[oc]`;
  /// * float weights on nodes the engine ran in float (`floatFallbackNodes`).
  ///
  /// The batch dimension is symbolic: Reshape targets that repeat the batch size copy it
  /// from their input (`0`) instead.
  ///
  /// - Parameters:
  ///   - producerVersion: recorded as the model's `producer_version`.
  ///   - metadata: extra `metadata_props` (the calibration is always recorded).
  /// - Throws: `ModelError` naming the node or value when the graph holds something a QDQ
  ///   model cannot express (non-float activations, parameters still computed at run time).
  public func quantizedModel(producerVersion: String = "", metadata: [String: String] = [:])
    throws -> Data
  {
    try quantizedModel(
      producerVersion: producerVersion, metadata: metadata, shiftingSignedCodes: true)
  }

  /// `quantizedModel(producerVersion:metadata:)`, with the engine's int8 activation codes
  /// written as int8 (`shiftingSignedCodes` false) instead of uint8 + 128 (for comparisons).
  func quantizedModel(
    producerVersion: String, metadata: [String: String], shiftingSignedCodes: Bool
  ) throws -> Data {
    var exporter = QDQExporter(engine: self)
    exporter.shiftsSignedCodes = shiftingSignedCodes
    try exporter.export()
    var properties = metadata
    properties["quantization.format"] = "QDQ"
    properties["quantization.calibration_method"] = calibration.method.rawValue
    properties["quantization.calibration_images"] = String(calibration.imageCount)
    properties["quantization.activations"] = scheme.activations.rawValue
    properties["quantization.activation_codes"] =
      shiftingSignedCodes ? "uint8 (int8 codes written + 128)" : "as the engine holds them"
    properties["quantization.weights"] = scheme.weights.rawValue
    properties["quantization.float_nodes"] = floatFallbackNodes.joined(separator: ",")
    let model = exporter.writer.model(
      opset: Self.qdqOpset, irVersion: 10, producerName: "imagenet-eval",
      producerVersion: producerVersion,
      docString: "Post-training int8 quantisation (QDQ) written by imagenet-eval's Int8Engine.",
      metadata: properties)
    do {
      return try model.serializedData()
    } catch {
      throw ModelError(.invalidGraph, "QDQ export: cannot serialise the model: \(error)")
    }
  }
}

/// Writes an `Int8Engine`'s prepared graph, parameters and integer weights as ONNX nodes.
struct QDQExporter {
  let graph: Graph
  let params: [ValueID: QuantParams]
  let nodeWeights: [Int: Int8Lowering.NodeWeights]
  let nodeIsQuantized: [Bool]
  /// Values the engine leaves in float (logits written directly): no Q/DQ.
  let floatValues: Set<ValueID>
  let batchSize: Int
  let batchDimension: DeclaredDimension
  /// Writes the engine's int8 activation codes as uint8 with the zero point moved by 128:
  /// the same codes shifted, the same real values. onnxruntime fuses `DequantizeLinear → Conv
  /// → QuantizeLinear` into its integer QLinearConv (and Add, pooling into QLinear ops) only
  /// on uint8 codes; int8 ones it converts only where their QuantizeLinear has one reader,
  /// and runs the other Convs in float32, which rounds differently from the engine's integer
  /// accumulation.
  var shiftsSignedCodes = true
  var writer: ONNXWriter
  /// The tensor name consumers of a value read (the DequantizeLinear output when quantised).
  private var readNames: [ValueID: String] = [:]
  /// Float initializers already written for constants.
  private var constantNames: [ValueID: String] = [:]
  /// Per quantised activation: its QuantizeLinear output and parameters.
  private var codes: [ValueID: (name: String, params: QuantParams)] = [:]
  /// Per-axis dequantisations already written (see `floatWeightedInput`).
  private var perAxisNames: [ValueID: String] = [:]

  init(engine: Int8Engine) {
    graph = engine.graph
    params = engine.params
    nodeWeights = engine.nodeWeights
    nodeIsQuantized = engine.nodeIsQuantized
    floatValues = engine.logitsAreFloat ? Set(engine.graph.outputs.prefix(1)) : []
    batchSize = engine.batchSize
    var dimension = DeclaredDimension.symbolic("N")
    if case .symbolic(let name)? = engine.graph.declaredInputShapes.first?.first,
      !name.hasPrefix("?")
    {
      dimension = .symbolic(name)
    }
    batchDimension = dimension
    writer = ONNXWriter(graphName: "int8-qdq")
    // Every original value keeps its name; generated names never collide with them.
    for value in graph.values { writer.reserve(value.name) }
  }

  private func fail(_ message: String) -> ModelError {
    ModelError(.invalidGraph, "QDQ export: \(message)")
  }

  mutating func export() throws {
    for input in graph.inputs {
      let shape = try graph.shape(of: input)
      writer.addInput(
        name: graph.values[input].name, type: graph.values[input].elementType,
        dimensions: dimensions(shape))
      try publish(input, producedAs: graph.values[input].name)
    }
    let outputs = Set(graph.outputs)
    for (index, node) in graph.nodes.enumerated() {
      // Graph outputs keep their names for the last tensor of their chain; a quantised one
      // is produced under another name and dequantised into its own.
      var produced: [String] = []
      for output in node.outputs {
        let name = graph.values[output].name
        let quantized = !floatValues.contains(output)
        produced.append(
          outputs.contains(output) && quantized ? writer.uniqueName("\(name)_float") : name)
      }
      try emit(index, node, outputs: produced)
      for (output, name) in zip(node.outputs, produced) {
        try publish(output, producedAs: name)
      }
    }
    for output in graph.outputs {
      guard let name = readNames[output] else {
        throw fail("graph output '\(graph.values[output].name)' is not computed by any node")
      }
      writer.addOutput(
        name: name, type: .float32, dimensions: graph.values[output].shape.map(dimensions))
    }
  }

  /// Declared dimensions of a value of `shape`: the batch dimension symbolic.
  private func dimensions(_ shape: [Int]) -> [DeclaredDimension] {
    shape.enumerated().map {
      $0.offset == 0 && $0.element == batchSize ? batchDimension : .fixed($0.element)
    }
  }

  // MARK: Activations

  /// Makes `value` (written by its producer as `name`) available to consumers: through
  /// QuantizeLinear → DequantizeLinear with the engine's parameters, or as is when the engine
  /// keeps it in float.
  private mutating func publish(_ value: ValueID, producedAs name: String) throws {
    let original = graph.values[value].name
    guard graph.values[value].elementType == .float32 else {
      throw fail(
        "value '\(original)' is \(graph.values[value].elementType.rawValue); only float32 activations can be quantised"
      )
    }
    if floatValues.contains(value) {
      readNames[value] = name
      return
    }
    guard let engineParams = params[value] else {
      throw fail("value '\(original)' has no quantisation parameters")
    }
    let p = try exported(engineParams, of: original)
    let zeroPoint = Self.zeroPointTensor(p)
    let scale = writer.addInitializer(
      Tensor(shape: [], floats: [p.scale]), name: "\(original)_scale")
    let zero = writer.addInitializer(zeroPoint, name: "\(original)_zero_point")
    let codes = writer.uniqueName("\(original)_quantized")
    // A graph output's dequantised tensor carries the output's own name.
    let dequantized = name == original ? writer.uniqueName("\(original)_dequantized") : original
    writer.addNode(
      "QuantizeLinear", name: "\(original)_QuantizeLinear", inputs: [name, scale, zero],
      outputs: [codes])
    writer.addNode(
      "DequantizeLinear", name: "\(original)_DequantizeLinear", inputs: [codes, scale, zero],
      outputs: [dequantized])
    readNames[value] = dequantized
    self.codes[value] = (codes, p)
  }

  /// The parameters an activation is written with: uint8 codes for the engine's int8 codes
  /// when `shiftsSignedCodes` (zero point + 128, the same real values), else the engine's.
  private func exported(_ p: QuantParams, of name: String) throws -> QuantParams {
    switch p.type {
    case .uint8: return p
    case .int8:
      guard shiftsSignedCodes else { return p }
      do {
        return try QuantParams(type: .uint8, scale: p.scale, zeroPoint: p.zeroPoint + 128)
      } catch {
        throw fail("value '\(name)': \(error)")
      }
    case .int16, .int32:
      throw fail("value '\(name)': \(p.type.rawValue) activations are not exported")
    }
  }

  /// A scalar zero-point initializer of `p`'s code type (int8 or uint8).
  private static func zeroPointTensor(_ p: QuantParams) -> Tensor {
    p.type == .uint8
      ? Tensor(shape: [], storage: .uint8([UInt8(p.zeroPoint)]))
      : Tensor(shape: [], storage: .int8([Int8(p.zeroPoint)]))
  }

  /// The data input of a Conv/Gemm the engine ran in float. onnxruntime's
  /// `WeightBiasQuantization` optimisation quantises the float weights of any Conv/Gemm fed by
  /// a per-tensor DequantizeLinear (per tensor, int8), which would undo the float fallback; a
  /// DequantizeLinear with the same scale repeated per channel (axis 1) computes the same
  /// values and keeps the node float in onnxruntime.
  private mutating func floatWeightedInput(_ value: ValueID, of node: Node) throws -> String {
    guard let (name, p) = codes[value], let shape = graph.values[value].shape, shape.count >= 2,
      shape[1] > 1
    else { return try input(value, of: node) }
    if let done = perAxisNames[value] { return done }
    let original = graph.values[value].name
    let channels = shape[1]
    let zeroPoint: TensorStorage =
      p.type == .uint8
      ? .uint8([UInt8](repeating: UInt8(p.zeroPoint), count: channels))
      : .int8([Int8](repeating: Int8(p.zeroPoint), count: channels))
    let scale = writer.addInitializer(
      Tensor(shape: [channels], floats: [Float](repeating: p.scale, count: channels)),
      name: "\(original)_channel_scale")
    let zero = writer.addInitializer(
      Tensor(shape: [channels], storage: zeroPoint), name: "\(original)_channel_zero_point")
    let output = writer.uniqueName("\(original)_dequantized_per_channel")
    writer.addNode(
      "DequantizeLinear", name: "\(original)_DequantizeLinear_per_channel",
      inputs: [name, scale, zero], outputs: [output], attributes: [("axis", .int(1))])
    perAxisNames[value] = output
    return output
  }

  /// The tensor name to read `value` by: its dequantised activation, or a float initializer.
  private mutating func input(_ value: ValueID, of node: Node) throws -> String {
    if let name = readNames[value] { return name }
    if let tensor = graph.constants[value] {
      if let name = constantNames[value] { return name }
      let name = graph.values[value].name
      writer.addInitializer(tensor, reservedName: name)
      constantNames[value] = name
      return name
    }
    throw fail("node '\(node.name)': input '\(graph.values[value].name)' is not computed before it")
  }

  /// An int64 initializer.
  private mutating func integers(_ values: [Int], _ name: String) -> String {
    writer.addInitializer(Tensor(shape: [values.count], int64s: values.map(Int64.init)), name: name)
  }

  // MARK: Nodes

  /// Writes the ONNX node(s) computing `node`, with its outputs named `outputs`.
  private mutating func emit(_ index: Int, _ node: Node, outputs: [String]) throws {
    let name = node.name
    let out = outputs[0]
    func data(_ i: Int) throws -> String { try input(node.inputs[i], of: node) }
    switch node.op {
    case .conv(let c):
      guard c.autoPad == .explicit else { throw fail("node '\(name)': auto_pad was not resolved") }
      var inputs: [String] = []
      if nodeIsQuantized[index], let w = nodeWeights[index] {
        inputs.append(try data(0))
        let (weights, bias) = try quantizedOperands(node, w, convolution: true)
        inputs.append(weights)
        if let bias { inputs.append(bias) }
      } else {
        inputs.append(try floatWeightedInput(node.inputs[0], of: node))
        inputs.append(try data(1))
        if let bias = node.convolutionBias { inputs.append(try input(bias, of: node)) }
      }
      let result =
        c.postOps.isEmpty ? out : writer.uniqueName("\(graph.values[node.outputs[0]].name)_conv")
      writer.addNode(
        "Conv", name: name, inputs: inputs, outputs: [result],
        attributes: [
          ("kernel_shape", .ints(c.kernelShape)), ("strides", .ints(c.strides)),
          ("pads", .ints(c.pads)), ("dilations", .ints(c.dilations)), ("group", .int(c.group)),
        ])
      try emitPostOps(c.postOps, node, from: result, to: out)
    case .gemm(let g):
      var inputs: [String] = []
      var attributes: [(String, ONNXWriter.AttributeValue)]
      if nodeIsQuantized[index], let w = nodeWeights[index] {
        guard !g.transA else { throw fail("node '\(name)': quantised Gemm with transA") }
        inputs.append(try data(0))
        let (weights, bias) = try quantizedOperands(node, w, convolution: false)
        inputs.append(weights)
        if let bias { inputs.append(bias) }
        // The codes are [n, k] with alpha (and beta, in the bias) already applied.
        attributes = [("transB", .int(1))]
      } else {
        inputs.append(try floatWeightedInput(node.inputs[0], of: node))
        inputs.append(try data(1))
        if node.inputs.count > 2 { inputs.append(try data(2)) }
        attributes = [
          ("alpha", .float(g.alpha)), ("beta", .float(g.beta)), ("transA", .int(g.transA ? 1 : 0)),
          ("transB", .int(g.transB ? 1 : 0)),
        ]
      }
      let result =
        g.postOps.isEmpty ? out : writer.uniqueName("\(graph.values[node.outputs[0]].name)_gemm")
      writer.addNode("Gemm", name: name, inputs: inputs, outputs: [result], attributes: attributes)
      try emitPostOps(g.postOps, node, from: result, to: out)
    case .matMul, .binary, .erf, .globalAveragePool, .identity, .gather, .concat:
      let inputs = try node.inputs.indices.map(data)
      var attributes: [(String, ONNXWriter.AttributeValue)] = []
      if case .gather(let axis) = node.op { attributes = [("axis", .int(axis))] }
      if case .concat(let axis) = node.op { attributes = [("axis", .int(axis))] }
      writer.addNode(
        node.op.name, name: name, inputs: inputs, outputs: [out], attributes: attributes)
    case .activation(let a):
      emitActivation(a, name: name, from: try data(0), to: out)
    case .softmax(let axis, let coerce):
      let shape = try graph.shape(of: node.outputs[0])
      let normalized = axis < 0 ? axis + shape.count : axis
      if !coerce || normalized == shape.count - 1 {
        writer.addNode(
          "Softmax", name: name, inputs: [try data(0)], outputs: [out],
          attributes: [("axis", .int(normalized))])
      } else {
        // Opset < 13 normalised over all dims from `axis` on: the 2-D view, then back.
        let flat = writer.uniqueName("\(out)_2d")
        let soft = writer.uniqueName("\(out)_softmax")
        writer.addNode(
          "Flatten", name: "\(name)_flatten", inputs: [try data(0)], outputs: [flat],
          attributes: [("axis", .int(normalized))])
        writer.addNode(
          "Softmax", name: name, inputs: [flat], outputs: [soft], attributes: [("axis", .int(1))])
        let target = [-1] + shape.dropFirst()
        writer.addNode(
          "Reshape", name: "\(name)_reshape", inputs: [soft, integers(target, "\(out)_shape")],
          outputs: [out])
      }
    case .batchNormalization(let epsilon):
      writer.addNode(
        "BatchNormalization", name: name, inputs: try node.inputs.indices.map(data),
        outputs: [out], attributes: [("epsilon", .float(epsilon))])
    case .scaleShift:
      let shape = try graph.shape(of: node.inputs[0])
      guard let scale = graph.constants[node.inputs[1]]?.floatValues,
        let shift = graph.constants[node.inputs[2]]?.floatValues, shape.count >= 2
      else { throw fail("node '\(name)': ScaleShift needs constant scale and shift") }
      // Per channel (axis 1): constants of shape [C, 1, …] broadcast against [N, C, …].
      let perChannel = [shape[1]] + [Int](repeating: 1, count: shape.count - 2)
      let scaleName = writer.addInitializer(
        Tensor(shape: perChannel, floats: scale),
        name: "\(graph.values[node.inputs[1]].name)_channel")
      let shiftName = writer.addInitializer(
        Tensor(shape: perChannel, floats: shift),
        name: "\(graph.values[node.inputs[2]].name)_channel")
      let scaled = writer.uniqueName("\(out)_scaled")
      writer.addNode(
        "Mul", name: "\(name)_scale", inputs: [try data(0), scaleName], outputs: [scaled])
      writer.addNode("Add", name: "\(name)_shift", inputs: [scaled, shiftName], outputs: [out])
    case .maxPool(let p), .averagePool(let p):
      guard p.autoPad == .explicit else { throw fail("node '\(name)': auto_pad was not resolved") }
      var attributes: [(String, ONNXWriter.AttributeValue)] = [
        ("kernel_shape", .ints(p.kernelShape)), ("strides", .ints(p.strides)),
        ("pads", .ints(p.pads)), ("ceil_mode", .int(p.ceilMode ? 1 : 0)),
      ]
      if case .averagePool = node.op {
        attributes.append(("count_include_pad", .int(p.countIncludePad ? 1 : 0)))
        if p.dilations.contains(where: { $0 != 1 }) {
          attributes.append(("dilations", .ints(p.dilations)))
        }
      } else {
        attributes.append(("dilations", .ints(p.dilations)))
      }
      writer.addNode(
        node.op.name, name: name, inputs: [try data(0)], outputs: [out], attributes: attributes)
    case .reduceMean(let axes, let keepDims):
      var inputs = [try data(0)]
      if let axes { inputs.append(integers(axes, "\(out)_axes")) }
      writer.addNode(
        "ReduceMean", name: name, inputs: inputs, outputs: [out],
        attributes: [("keepdims", .int(keepDims ? 1 : 0))])
    case .flatten(let axis):
      writer.addNode(
        "Flatten", name: name, inputs: [try data(0)], outputs: [out],
        attributes: [("axis", .int(axis))])
    case .reshape(let shape, let allowZero):
      guard var shape else { throw fail("node '\(name)': Reshape target is not constant") }
      // The batch size in the target becomes "copy the input's first dimension".
      let inputShape = try graph.shape(of: node.inputs[0])
      if !allowZero, shape.first == batchSize, inputShape.first == batchSize { shape[0] = 0 }
      writer.addNode(
        "Reshape", name: name, inputs: [try data(0), integers(shape, "\(out)_shape")],
        outputs: [out], attributes: allowZero ? [("allowzero", .int(1))] : [])
    case .transpose(let perm):
      writer.addNode(
        "Transpose", name: name, inputs: [try data(0)], outputs: [out],
        attributes: perm.map { [("perm", .ints($0))] } ?? [])
    case .squeeze(let axes):
      var inputs = [try data(0)]
      if let axes { inputs.append(integers(axes, "\(out)_axes")) }
      writer.addNode("Squeeze", name: name, inputs: inputs, outputs: [out])
    case .unsqueeze(let axes):
      writer.addNode(
        "Unsqueeze", name: name, inputs: [try data(0), integers(axes, "\(out)_axes")],
        outputs: [out])
    case .split(let axis, let sizes):
      let parts =
        try sizes
        ?? node.outputs.map { id -> Int in
          let shape = try graph.shape(of: id)
          return shape[axis < 0 ? axis + shape.count : axis]
        }
      writer.addNode(
        "Split", name: name, inputs: [try data(0), integers(parts, "\(out)_split")],
        outputs: outputs, attributes: [("axis", .int(axis))])
    case .slice(let starts, let ends, let axes, let steps):
      guard let starts, let ends else {
        throw fail("node '\(name)': Slice bounds are not constant")
      }
      var inputs = [try data(0), integers(starts, "\(out)_starts"), integers(ends, "\(out)_ends")]
      if axes != nil || steps != nil {
        inputs.append(integers(axes ?? Array(0..<starts.count), "\(out)_axes"))
      }
      if let steps { inputs.append(integers(steps, "\(out)_steps")) }
      writer.addNode("Slice", name: name, inputs: inputs, outputs: [out])
    case .pad(let mode, let pads, let value):
      guard let pads else { throw fail("node '\(name)': Pad amounts are not constant") }
      let constant = writer.addInitializer(Tensor(shape: [], floats: [value]), name: "\(out)_value")
      writer.addNode(
        "Pad", name: name, inputs: [try data(0), integers(pads, "\(out)_pads"), constant],
        outputs: [out], attributes: [("mode", .string(mode.rawValue))])
    case .shape(let start, let end):
      var attributes: [(String, ONNXWriter.AttributeValue)] = [("start", .int(start))]
      if let end { attributes.append(("end", .int(end))) }
      writer.addNode(
        "Shape", name: name, inputs: [try data(0)], outputs: [out], attributes: attributes)
    case .cast(let type):
      writer.addNode(
        "Cast", name: name, inputs: [try data(0)], outputs: [out],
        attributes: [("to", .int(Int(ONNXWriter.dataType(type))))])
    case .quantizeLinear, .dequantizeLinear:
      throw fail("node '\(name)': the model already holds \(node.op.name) nodes")
    }
  }

  /// The fused operations of a Conv/Gemm as separate nodes, from tensor `from` to `to`.
  private mutating func emitPostOps(_ ops: [PostOp], _ node: Node, from: String, to: String)
    throws
  {
    var current = from
    let base = graph.values[node.outputs[0]].name
    for (position, op) in ops.enumerated() {
      let last = position == ops.count - 1
      let next = last ? to : writer.uniqueName("\(base)_post\(position)")
      switch op {
      case .sum:
        guard let operand = node.sumOperand else {
          throw fail("node '\(node.name)': sum post-op without an operand")
        }
        writer.addNode(
          "Add", name: "\(node.name)_sum", inputs: [current, try input(operand, of: node)],
          outputs: [next])
      case .activation(let a):
        var source = current
        if last, case .relu = a {
          source = quantizedBeforeClamp(node, current)
        } else if last, case .clip = a {
          source = quantizedBeforeClamp(node, current)
        }
        emitActivation(
          a, name: "\(node.name)_\(Op.activation(a).name.lowercased())", from: source, to: next)
      }
      current = next
    }
  }

  /// The fused clamp's input quantised with the node's output parameters (`Q → DQ`). The
  /// engine clamps before it rounds, and a clamp commutes with the monotonic rounding, so this
  /// computes the same codes; it lets onnxruntime fuse `DQ → Conv → Q` into an integer
  /// QLinearConv (a Clip between Conv and Q keeps the Conv in float there, where float
  /// accumulation rounds differently). Unchanged when the output is not quantised.
  private mutating func quantizedBeforeClamp(_ node: Node, _ value: String) -> String {
    let output = node.outputs[0]
    let base = graph.values[output].name
    guard !floatValues.contains(output), let engineParams = params[output],
      engineParams.type == .int8 || engineParams.type == .uint8,
      let p = try? exported(engineParams, of: base)
    else { return value }
    let zeroPoint = Self.zeroPointTensor(p)
    let scale = writer.addInitializer(
      Tensor(shape: [], floats: [p.scale]), name: "\(base)_preclamp_scale")
    let zero = writer.addInitializer(zeroPoint, name: "\(base)_preclamp_zero_point")
    let codes = writer.uniqueName("\(base)_preclamp_quantized")
    let dequantized = writer.uniqueName("\(base)_preclamp_dequantized")
    writer.addNode(
      "QuantizeLinear", name: "\(base)_preclamp_QuantizeLinear", inputs: [value, scale, zero],
      outputs: [codes])
    writer.addNode(
      "DequantizeLinear", name: "\(base)_preclamp_DequantizeLinear",
      inputs: [codes, scale, zero], outputs: [dequantized])
    return dequantized
  }

  private mutating func emitActivation(_ a: Activation, name: String, from: String, to: String) {
    var inputs = [from]
    var attributes: [(String, ONNXWriter.AttributeValue)] = []
    switch a {
    case .leakyRelu(let alpha): attributes = [("alpha", .float(alpha))]
    case .hardSigmoid(let alpha, let beta):
      attributes = [("alpha", .float(alpha)), ("beta", .float(beta))]
    case .gelu(let tanh): attributes = [("approximate", .string(tanh ? "tanh" : "none"))]
    case .clip(let low, let high):
      // An infinite bound is an omitted input.
      inputs.append(
        low.isFinite
          ? writer.addInitializer(Tensor(shape: [], floats: [low]), name: "\(to)_min") : "")
      if high.isFinite {
        inputs.append(writer.addInitializer(Tensor(shape: [], floats: [high]), name: "\(to)_max"))
      }
    case .relu, .sigmoid, .hardSwish, .tanh: break
    }
    writer.addNode(
      Op.activation(a).name, name: name, inputs: inputs, outputs: [to], attributes: attributes)
  }

  // MARK: Integer weights

  /// The dequantised weight and bias tensors of a quantised Conv (OIHW) or Gemm (`[n, k]`).
  private mutating func quantizedOperands(
    _ node: Node, _ w: Int8Lowering.NodeWeights, convolution: Bool
  ) throws -> (weights: String, bias: String?) {
    let base = graph.values[node.inputs[1]].name
    var codes = w.codes
    var shape = w.shape
    if convolution {
      // The kernel's OHWI codes back into ONNX's OIHW.
      guard shape.count == 4 else {
        throw fail("node '\(node.name)': weights of rank \(shape.count)")
      }
      let (o, kh, kw, i) = (shape[0], shape[1], shape[2], shape[3])
      codes = [Int8](repeating: 0, count: w.codes.count)
      for oc in 0..<o {
        for y in 0..<kh {
          for x in 0..<kw {
            for ic in 0..<i {
              codes[((oc * i + ic) * kh + y) * kw + x] = w.codes[((oc * kh + y) * kw + x) * i + ic]
            }
          }
        }
      }
      shape = [o, i, kh, kw]
    }
    let channels = shape[0]
    let perChannel = w.params.scales.count > 1
    let scaleShape = perChannel ? [channels] : []
    let quantized = writer.addInitializer(
      Tensor(shape: shape, storage: .int8(codes)), name: "\(base)_quantized")
    let scale = writer.addInitializer(
      Tensor(shape: scaleShape, floats: w.params.scales), name: "\(base)_scale")
    let zero = writer.addInitializer(
      Tensor(shape: scaleShape, storage: .int8(w.params.zeroPoints.map { Int8($0) })),
      name: "\(base)_zero_point")
    let weights = writer.uniqueName("\(base)_dequantized")
    writer.addNode(
      "DequantizeLinear", name: "\(base)_DequantizeLinear", inputs: [quantized, scale, zero],
      outputs: [weights], attributes: perChannel ? [("axis", .int(0))] : [])
    guard let bias = w.bias else { return (weights, nil) }
    // The bias scale is the product the engine divided by, rounded to float32 as it was.
    let biasScales = (0..<channels).map { w.inputScale * w.params.scales[perChannel ? $0 : 0] }
    let biasBase = "\(node.name)_bias"
    let biasCodes = writer.addInitializer(
      Tensor(shape: [channels], storage: .int32(bias)), name: "\(biasBase)_quantized")
    let biasScale = writer.addInitializer(
      Tensor(shape: [channels], floats: biasScales), name: "\(biasBase)_scale")
    let biasZero = writer.addInitializer(
      Tensor(shape: [channels], storage: .int32([Int32](repeating: 0, count: channels))),
      name: "\(biasBase)_zero_point")
    let dequantizedBias = writer.uniqueName("\(biasBase)_dequantized")
    writer.addNode(
      "DequantizeLinear", name: "\(biasBase)_DequantizeLinear",
      inputs: [biasCodes, biasScale, biasZero], outputs: [dequantizedBias],
      attributes: [("axis", .int(0))])
    return (weights, dequantizedBias)
  }
}
