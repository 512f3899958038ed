import Foundation

// The QOperator format (QLinearConv and friends) loads as its QDQ equivalent: every quantized
// input is dequantized, the float op runs, its output is quantized. That is the definition
// ONNX and onnxruntime give these ops, and it leaves the int8 engine a single quantized form
// to import (`QuantizedImport`), which takes the codes and parameters from the Q/DQ nodes
// bit for bit.

extension GraphBuilder {
  /// The QOperator ops and the domains they are defined in.
  static let quantizedOperators: [String: Set<String>] = [
    "QLinearConv": ["", "ai.onnx"], "QLinearMatMul": ["", "ai.onnx"],
    "ConvInteger": ["", "ai.onnx"], "MatMulInteger": ["", "ai.onnx"],
    "QGemm": ["com.microsoft"], "QLinearAdd": ["com.microsoft"], "QLinearMul": ["com.microsoft"],
    "QLinearGlobalAveragePool": ["com.microsoft"], "QLinearAveragePool": ["com.microsoft"],
    "QLinearConcat": ["com.microsoft"], "QLinearSigmoid": ["com.microsoft"],
    "QLinearLeakyRelu": ["com.microsoft"],
  ]

  static func isQuantizedOperator(_ node: Onnx_NodeProto) -> Bool {
    quantizedOperators[node.opType]?.contains(node.domain) ?? false
  }

  /// Adds `proto` as DequantizeLinear nodes on its quantized inputs, the float op (named as
  /// the QOperator node, so messages and `floatNodes` use the model's names) and a
  /// QuantizeLinear writing the node's output.
  mutating func addQuantizedOperator(_ proto: Onnx_NodeProto, index: Int) throws {
    let name = proto.name.isEmpty ? "\(proto.opType)#\(index)" : proto.name
    let context = "\(fileName): node '\(name)' (\(proto.opType))"
    func invalid(_ reason: String) -> ModelError {
      ModelError(.invalidNode, "\(context): \(reason)")
    }
    let inputs = proto.input
    func input(_ i: Int) -> String? { i < inputs.count && !inputs[i].isEmpty ? inputs[i] : nil }
    func required(_ i: Int) throws -> String {
      guard let name = input(i) else { throw invalid("missing input \(i)") }
      return name
    }
    guard let output = proto.output.first, !output.isEmpty else {
      throw invalid("expects an output")
    }
    func fresh(_ what: String) -> String {
      var candidate = "\(name)/\(what)"
      while ids[candidate] != nil { candidate += "'" }
      return candidate
    }
    func attribute(_ name: String, int value: Int) -> Onnx_AttributeProto {
      var a = Onnx_AttributeProto()
      a.name = name
      a.type = .int
      a.i = Int64(value)
      return a
    }
    func emit(
      _ opType: String, _ nodeInputs: [String], _ outputs: [String], named nodeName: String,
      attributes: [Onnx_AttributeProto] = []
    ) throws {
      var node = Onnx_NodeProto()
      node.opType = opType
      node.name = nodeName
      node.input = nodeInputs
      node.output = outputs
      node.attribute = attributes
      try addNode(node, index: index)
    }
    func dequantized(_ codes: String, _ scale: String, _ zeroPoint: String?, axis: Int? = nil)
      throws -> String
    {
      let result = fresh("dequantized_\(codes)")
      try emit(
        "DequantizeLinear", [codes, scale] + (zeroPoint.map { [$0] } ?? []), [result],
        named: fresh("DequantizeLinear"),
        attributes: axis.map { [attribute("axis", int: $0)] } ?? [])
      return result
    }
    /// Runs the float op into a fresh value and quantizes it into the node's output.
    func floatOp(
      _ opType: String, _ floatInputs: [String], scale: String?, zeroPoint: String?,
      attributes: [Onnx_AttributeProto]
    ) throws {
      guard let scale else {
        try emit(opType, floatInputs, [output], named: name, attributes: attributes)
        return
      }
      let real = fresh("float_output")
      try emit(opType, floatInputs, [real], named: name, attributes: attributes)
      try emit(
        "QuantizeLinear", [real, scale] + (zeroPoint.map { [$0] } ?? []), [output],
        named: fresh("QuantizeLinear"))
    }
    /// A constant `scaleA * scaleB` (per channel when either is), the scale of an int32 bias.
    func productScale(_ a: String, _ b: String) throws -> String {
      guard let ia = ids[a], let ib = ids[b], let sa = graph.constants[ia]?.floats,
        let sb = graph.constants[ib]?.floats, !sa.isEmpty, !sb.isEmpty
      else { throw invalid("the scales '\(a)' and '\(b)' must be float constants") }
      let count = max(sa.count, sb.count)
      guard sa.count == 1 || sa.count == count, sb.count == 1 || sb.count == count else {
        throw invalid("scales '\(a)' (\(sa.count)) and '\(b)' (\(sb.count)) do not broadcast")
      }
      let product = (0..<count).map {
        sa[sa.count == 1 ? 0 : $0] * sb[sb.count == 1 ? 0 : $0]
      }
      let id = graph.addConstant(
        name: fresh("bias_scale"),
        Tensor(shape: count == 1 ? [] : [count], floats: product))
      ids[graph.values[id].name] = id
      return graph.values[id].name
    }
    /// A constant 1.0, the scale ConvInteger/MatMulInteger work in.
    func unitScale() -> String {
      let id = graph.addConstant(name: fresh("unit_scale"), Tensor(shape: [], floats: [1]))
      ids[graph.values[id].name] = id
      return graph.values[id].name
    }
    let passed = proto.attribute.filter { $0.name != "channels_last" }
    if proto.attribute.contains(where: { $0.name == "channels_last" && $0.i != 0 }) {
      throw invalid("channels_last = 1 is not supported")
    }

    switch proto.opType {
    case "QLinearConv":
      // x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B
      let x = try dequantized(try required(0), try required(1), input(2))
      let w = try dequantized(try required(3), try required(4), input(5), axis: 0)
      var floatInputs = [x, w]
      if let bias = input(8) {
        floatInputs.append(
          try dequantized(bias, try productScale(try required(1), try required(4)), nil, axis: 0))
      }
      try floatOp(
        "Conv", floatInputs, scale: try required(6), zeroPoint: input(7), attributes: passed)
    case "QLinearMatMul":
      // a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp
      let a = try dequantized(try required(0), try required(1), input(2))
      let bAxis = try perColumnAxis(try required(3), scale: try required(4), invalid)
      let b = try dequantized(try required(3), try required(4), input(5), axis: bAxis)
      try floatOp("MatMul", [a, b], scale: try required(6), zeroPoint: input(7), attributes: [])
    case "QGemm":
      // A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp
      let transB = proto.attribute.first { $0.name == "transB" }?.i ?? 0
      let a = try dequantized(try required(0), try required(1), input(2))
      let b = try dequantized(
        try required(3), try required(4), input(5), axis: transB != 0 ? 0 : 1)
      var floatInputs = [a, b]
      if let c = input(6) {
        floatInputs.append(
          try dequantized(c, try productScale(try required(1), try required(4)), nil, axis: 0))
      }
      try floatOp("Gemm", floatInputs, scale: input(7), zeroPoint: input(8), attributes: passed)
    case "ConvInteger", "MatMulInteger":
      // x, w, x_zp, w_zp: int32 accumulators, i.e. the op on (x - x_zp) and (w - w_zp).
      let one = unitScale()
      let x = try dequantized(try required(0), one, input(2))
      let w = try dequantized(
        try required(1), one, input(3), axis: proto.opType == "ConvInteger" ? 0 : nil)
      try emit(
        proto.opType == "ConvInteger" ? "Conv" : "MatMul", [x, w], [output], named: name,
        attributes: passed)
    case "QLinearAdd", "QLinearMul":
      // A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp
      let a = try dequantized(try required(0), try required(1), input(2))
      let b = try dequantized(try required(3), try required(4), input(5))
      try floatOp(
        proto.opType == "QLinearAdd" ? "Add" : "Mul", [a, b], scale: try required(6),
        zeroPoint: input(7), attributes: [])
    case "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu":
      // X, x_scale, x_zp, y_scale, y_zp
      let x = try dequantized(try required(0), try required(1), input(2))
      let op = String(proto.opType.dropFirst("QLinear".count))
      try floatOp(op, [x], scale: try required(3), zeroPoint: input(4), attributes: passed)
    case "QLinearConcat":
      // Y_scale, Y_zp, then (X, X_scale, X_zp) per input
      guard inputs.count >= 5, (inputs.count - 2) % 3 == 0 else {
        throw invalid("expects Y_scale, Y_zero_point and triples of X, X_scale, X_zero_point")
      }
      var floatInputs: [String] = []
      for start in stride(from: 2, to: inputs.count, by: 3) {
        floatInputs.append(
          try dequantized(try required(start), try required(start + 1), input(start + 2)))
      }
      try floatOp(
        "Concat", floatInputs, scale: try required(0), zeroPoint: input(1), attributes: passed)
    default:
      throw ModelError(.unsupportedOperators, "\(context): unsupported operator")
    }
  }

  /// The axis of a per-column (last axis) weight scale of a MatMul, nil when per tensor.
  private func perColumnAxis(
    _ weights: String, scale: String, _ invalid: (String) -> ModelError
  ) throws -> Int? {
    guard let id = ids[scale], let s = graph.constants[id] else { return nil }
    guard s.elementCount > 1 else { return nil }
    guard let w = ids[weights], let shape = graph.constants[w]?.shape ?? graph.values[w].shape
    else { throw invalid("per-column scales need a constant B") }
    return shape.count - 1
  }
}
