import Foundation
import SwiftProtobuf

/// Reads ONNX files into the canonical `Graph` IR.
///
/// Every spelling of an op across opsets 7–22 (attributes vs inputs for Split, Clip, Squeeze,
/// Unsqueeze, ReduceMean, Pad, Slice; Dropout; Constant) is normalised into one `Op` case.
/// Unsupported ops are all reported together before anything runs.
public enum ONNXLoader {
  /// The largest model file accepted, in bytes (protobuf cannot exceed 2 GiB anyway).
  static let maxFileBytes = 1 << 31

  /// Loads the model at `url`. External data files must live inside the model's directory.
  public static func load(contentsOf url: URL) throws -> Graph {
    let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
    guard let size = attributes?[.size] as? Int else {
      throw ModelError(.unreadableFile, "\(url.path): cannot read the model file")
    }
    guard size <= maxFileBytes else {
      throw ModelError(
        .unreadableFile, "\(url.path): \(size) bytes is larger than an ONNX file can be")
    }
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
      throw ModelError(.unreadableFile, "\(url.path): cannot read the model file (\(error))")
    }
    return try load(data: data, fileName: url.path, directory: url.deletingLastPathComponent())
  }

  /// Loads a model from serialized bytes. `fileName` is used in messages; `directory` is
  /// where external data may live (nil forbids external data).
  public static func load(data: Data, fileName: String = "<memory>", directory: URL? = nil) throws
    -> Graph
  {
    let model: Onnx_ModelProto
    do {
      model = try Onnx_ModelProto(serializedBytes: data)
    } catch {
      throw ModelError(
        .unreadableFile, "\(fileName): not a valid ONNX model (truncated or not protobuf: \(error))"
      )
    }
    guard model.hasGraph, model.irVersion > 0, !model.graph.output.isEmpty,
      !model.graph.node.isEmpty
    else {
      throw ModelError(
        .unreadableFile,
        "\(fileName): not an ONNX model (no ir_version, graph, nodes or outputs; truncated?)")
    }
    var opset = 0
    for entry in model.opsetImport where entry.domain == "" || entry.domain == "ai.onnx" {
      opset = Int(entry.version)
    }
    guard opset > 0 else {
      throw ModelError(.unreadableFile, "\(fileName): the model imports no default-domain opset")
    }
    var builder = GraphBuilder(
      fileName: fileName, opset: opset,
      decoder: TensorDecoder(modelDirectory: directory, fileName: fileName))
    return try builder.build(model.graph)
  }
}

/// Typed access to a node's attributes with ONNX defaults.
struct AttributeReader {
  let values: [String: Onnx_AttributeProto]
  let context: String

  init(_ node: Onnx_NodeProto, context: String) {
    var values: [String: Onnx_AttributeProto] = [:]
    for attribute in node.attribute { values[attribute.name] = attribute }
    self.values = values
    self.context = context
  }

  func has(_ name: String) -> Bool { values[name] != nil }

  func int(_ name: String, _ fallback: Int) throws -> Int {
    guard let a = values[name] else { return fallback }
    guard let v = Int(exactly: a.i) else { throw bad(name) }
    return v
  }

  func float(_ name: String, _ fallback: Float) -> Float { values[name].map { $0.f } ?? fallback }

  func ints(_ name: String) throws -> [Int]? {
    guard let a = values[name] else { return nil }
    // Exporters write INT64_MAX/MIN for "to the end" (Slice); no dimension comes near 2^40,
    // so clamping keeps every meaning while ruling out overflow in index arithmetic.
    let limit = Int64(1) << 40
    return a.ints.map { Int(min(max($0, -limit), limit)) }
  }

  func string(_ name: String) -> String? {
    values[name].map { String(decoding: $0.s, as: UTF8.self) }
  }

  private func bad(_ name: String) -> ModelError {
    ModelError(.invalidNode, "\(context): attribute '\(name)' is out of range")
  }
}

struct GraphBuilder {
  let fileName: String
  let opset: Int
  let decoder: TensorDecoder
  var graph = Graph(
    values: [], nodes: [], constants: [:], inputs: [], declaredInputShapes: [], outputs: [],
    opsetVersion: 0)
  var ids: [String: ValueID] = [:]
  /// Every name some node or the graph output reads: optional outputs nobody reads (Dropout's
  /// mask, MaxPool's indices, training-mode BN statistics) are then simply not defined.
  var read = Set<String>()

  init(fileName: String, opset: Int, decoder: TensorDecoder) {
    self.fileName = fileName
    self.opset = opset
    self.decoder = decoder
    graph.opsetVersion = opset
  }

  static let supported: Set<String> = [
    "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Clip", "Sigmoid",
    "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "Softmax", "BatchNormalization", "MaxPool",
    "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "Transpose",
    "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Pad", "Identity", "Dropout", "Constant",
    "Shape", "Gather", "Cast", "QuantizeLinear", "DequantizeLinear", "Sum", "ConstantOfShape",
  ]

  mutating func build(_ proto: Onnx_GraphProto) throws -> Graph {
    for node in proto.node { read.formUnion(node.input) }
    read.formUnion(proto.output.map(\.name))
    // Report every unsupported op at once, before doing any work.
    var unsupported: [String] = []
    for (index, node) in proto.node.enumerated() {
      let domainOK = node.domain == "" || node.domain == "ai.onnx"
      if Self.isQuantizedOperator(node) { continue }
      if !domainOK || !Self.supported.contains(node.opType) {
        let name = node.name.isEmpty ? "#\(index)" : node.name
        let domain = node.domain.isEmpty ? "ai.onnx" : node.domain
        unsupported.append("node '\(name)': \(node.opType) (domain \(domain))")
      }
    }
    if !unsupported.isEmpty {
      throw ModelError(
        .unsupportedOperators,
        "\(fileName): \(unsupported.count) unsupported operator(s):\n  "
          + unsupported.joined(separator: "\n  "))
    }

    for initializer in proto.initializer {
      guard ids[initializer.name] == nil else {
        throw ModelError(
          .invalidGraph, "\(fileName): initializer '\(initializer.name)' is defined twice")
      }
      let tensor = try decoder.decode(initializer, name: initializer.name)
      ids[initializer.name] = graph.addConstant(name: initializer.name, tensor)
    }
    for input in proto.input where ids[input.name] == nil {
      let type = input.type.tensorType
      guard let elementType = Self.elementType(type.elemType) else {
        throw ModelError(
          .invalidGraph,
          "\(fileName): graph input '\(input.name)' has unsupported type \(type.elemType)")
      }
      var dims: [DeclaredDimension] = []
      for (i, dim) in type.shape.dim.enumerated() {
        switch dim.value {
        case .dimValue(let v)?:
          guard v > 0, v < (1 << 31) else {
            throw ModelError(
              .invalidGraph, "\(fileName): graph input '\(input.name)' has invalid dimension \(v)")
          }
          dims.append(.fixed(Int(v)))
        case .dimParam(let p)?: dims.append(.symbolic(p))
        case nil: dims.append(.symbolic("?\(i)"))
        }
      }
      let id = graph.addValue(Value(name: input.name, elementType: elementType))
      ids[input.name] = id
      graph.inputs.append(id)
      graph.declaredInputShapes.append(dims)
    }
    for (index, node) in try topologicallySorted(proto) {
      if Self.isQuantizedOperator(node) {
        try addQuantizedOperator(node, index: index)
      } else {
        try addNode(node, index: index)
      }
    }
    for output in proto.output {
      guard let id = ids[output.name] else {
        throw ModelError(
          .missingValue, "\(fileName): graph output '\(output.name)' is not produced by any node")
      }
      graph.outputs.append(id)
    }
    return graph
  }

  /// The nodes in an order where every input is produced before it is read. ONNX requires
  /// sorted graphs, but some tools write them unsorted; an already sorted graph takes one pass.
  private func topologicallySorted(_ proto: Onnx_GraphProto) throws -> [(Int, Onnx_NodeProto)] {
    var produced = Set<String>()
    for node in proto.node { produced.formUnion(node.output) }
    var available = Set(ids.keys)
    var pending = Array(proto.node.enumerated())
    var result: [(Int, Onnx_NodeProto)] = []
    result.reserveCapacity(pending.count)
    while !pending.isEmpty {
      var deferred: [(Int, Onnx_NodeProto)] = []
      for (index, node) in pending {
        let ready = node.input.allSatisfy {
          $0.isEmpty || available.contains($0) || !produced.contains($0)
        }
        if ready {
          result.append((index, node))
          available.formUnion(node.output)
        } else {
          deferred.append((index, node))
        }
      }
      if deferred.count == pending.count {
        let (index, node) = deferred[0]
        throw ModelError(
          .invalidGraph,
          "\(fileName): node '\(node.name.isEmpty ? "#\(index)" : node.name)' (\(node.opType)) is part of a cycle"
        )
      }
      pending = deferred
    }
    return result
  }

  static func elementType(_ onnxType: Int32) -> ElementType? {
    switch onnxType {
    case 1: .float32
    case 2: .uint8
    case 3: .int8
    case 6: .int32
    case 7: .int64
    default: nil
    }
  }

  private func constant(_ id: ValueID) -> Tensor? { graph.constants[id] }

  mutating func addNode(_ proto: Onnx_NodeProto, index: Int) throws {
    let nodeName = proto.name.isEmpty ? "\(proto.opType)#\(index)" : proto.name
    let context = "\(fileName): node '\(nodeName)' (\(proto.opType))"
    func invalid(_ reason: String) -> ModelError {
      ModelError(.invalidNode, "\(context): \(reason)")
    }
    let attributes = AttributeReader(proto, context: context)

    // Inputs: "" marks an omitted optional input.
    var inputs: [ValueID?] = []
    for name in proto.input {
      if name.isEmpty {
        inputs.append(nil)
        continue
      }
      guard let id = ids[name] else {
        throw ModelError(
          .missingValue,
          "\(context): input '\(name)' is neither a graph input, an initializer nor an earlier node's output"
        )
      }
      inputs.append(id)
    }
    func input(_ i: Int) -> ValueID? { i < inputs.count ? inputs[i] : nil }
    func required(_ i: Int) throws -> ValueID {
      guard let id = input(i) else { throw invalid("missing input \(i)") }
      return id
    }
    /// An optional parameter input that must be a constant when present.
    func constantInput(_ i: Int, _ what: String) throws -> Tensor? {
      guard let id = input(i) else { return nil }
      guard let t = constant(id) else {
        throw invalid("\(what) (input '\(graph.values[id].name)') must be a constant")
      }
      return t
    }
    func constantInts(_ i: Int, _ what: String) throws -> [Int]? {
      guard let t = try constantInput(i, what) else { return nil }
      guard let v = t.integers else { throw invalid("\(what) must be integers") }
      return v.map(GraphPasses.clampedIndex)
    }
    func constantScalar(_ i: Int, _ what: String) throws -> Float? {
      guard let t = try constantInput(i, what) else { return nil }
      guard t.elementCount == 1 else { throw invalid("\(what) must be a scalar") }
      return t.floatValues[0]
    }

    if proto.opType == "Constant" {
      guard proto.output.count == 1 else { throw invalid("expects one output") }
      let tensor: Tensor
      if let a = attributes.values["value"] {
        tensor = try decoder.decode(a.t, name: proto.output[0])
      } else if let a = attributes.values["value_float"] {
        tensor = Tensor(shape: [], floats: [a.f])
      } else if let a = attributes.values["value_floats"] {
        tensor = Tensor(shape: [a.floats.count], floats: a.floats)
      } else if let a = attributes.values["value_int"] {
        tensor = Tensor(shape: [], int64s: [a.i])
      } else if let a = attributes.values["value_ints"] {
        tensor = Tensor(shape: [a.ints.count], int64s: a.ints)
      } else {
        throw invalid("has no supported value attribute")
      }
      try define(proto.output[0], context: context)
      ids[proto.output[0]] = graph.addConstant(name: proto.output[0], tensor)
      return
    }

    if proto.opType == "ConstantOfShape" {
      // Only a constant shape is supported: the result is then a constant too.
      guard let shape = try constantInts(0, "shape"), proto.output.count == 1 else {
        throw invalid("needs a constant shape input and one output")
      }
      var count = 1
      for d in shape {
        let (product, overflow) = count.multipliedReportingOverflow(by: d)
        guard d >= 0, !overflow, product <= TensorDecoder.maxTensorBytes / 8 else {
          throw invalid("shape \(shape) is invalid or too large")
        }
        count = product
      }
      var fill = Tensor(shape: [1], floats: [0])
      if let a = attributes.values["value"] {
        fill = try decoder.decode(a.t, name: proto.output[0])
        guard fill.elementCount == 1 else { throw invalid("value must hold one element") }
      }
      let offsets = [Int](repeating: 0, count: count)
      try define(proto.output[0], context: context)
      ids[proto.output[0]] = graph.addConstant(
        name: proto.output[0], Tensor(shape: shape, storage: fill.storage.take(offsets)))
      return
    }

    if proto.opType == "Sum" {
      // Variadic Sum becomes a chain of binary Adds (left to right, like onnxruntime).
      guard !inputs.isEmpty, proto.output.count == 1 else {
        throw invalid("needs inputs and one output")
      }
      var acc = try required(0)
      let type = graph.values[acc].elementType
      if inputs.count == 1 {
        try define(proto.output[0], context: context)
        let out = graph.addValue(Value(name: proto.output[0], elementType: type))
        ids[proto.output[0]] = out
        graph.nodes.append(Node(name: nodeName, op: .identity, inputs: [acc], outputs: [out]))
        return
      }
      for k in 1..<inputs.count {
        let last = k == inputs.count - 1
        let name = last ? proto.output[0] : "\(proto.output[0])/partial\(k)"
        if last { try define(name, context: context) }
        let out = graph.addValue(Value(name: name, elementType: type))
        graph.nodes.append(
          Node(
            name: last ? nodeName : "\(nodeName)/\(k)", op: .binary(.add),
            inputs: [acc, try required(k)], outputs: [out]))
        acc = out
      }
      ids[proto.output[0]] = acc
      return
    }

    let data = try required(0)
    var nodeInputs: [ValueID] = [data]
    var outputCount = 1
    let op: Op
    switch proto.opType {
    case "Conv":
      nodeInputs = [data, try required(1)]
      if let b = input(2) { nodeInputs.append(b) }
      op = .conv(
        Convolution(
          kernelShape: try attributes.ints("kernel_shape") ?? [],
          strides: try attributes.ints("strides") ?? [],
          pads: try attributes.ints("pads") ?? [],
          dilations: try attributes.ints("dilations") ?? [],
          group: try attributes.int("group", 1),
          autoPad: try autoPad(attributes, invalid)))
    case "Gemm":
      nodeInputs = [data, try required(1)]
      if let c = input(2) { nodeInputs.append(c) }
      op = .gemm(
        Gemm(
          alpha: attributes.float("alpha", 1), beta: attributes.float("beta", 1),
          transA: try attributes.int("transA", 0) != 0, transB: try attributes.int("transB", 0) != 0
        ))
    case "MatMul":
      nodeInputs = [data, try required(1)]
      op = .matMul
    case "Add", "Sub", "Mul", "Div":
      if opset < 7, attributes.has("broadcast") {
        throw invalid("legacy broadcast attribute is not supported")
      }
      nodeInputs = [data, try required(1)]
      switch proto.opType {
      case "Add": op = .binary(.add)
      case "Sub": op = .binary(.sub)
      case "Mul": op = .binary(.mul)
      default: op = .binary(.div)
      }
    case "Relu": op = .activation(.relu)
    case "LeakyRelu": op = .activation(.leakyRelu(alpha: attributes.float("alpha", 0.01)))
    case "Sigmoid": op = .activation(.sigmoid)
    case "Tanh": op = .activation(.tanh)
    case "HardSigmoid":
      op = .activation(
        .hardSigmoid(alpha: attributes.float("alpha", 0.2), beta: attributes.float("beta", 0.5)))
    case "HardSwish": op = .activation(.hardSwish)
    case "Erf": op = .erf
    case "Gelu":
      let approximate = attributes.string("approximate") ?? "none"
      guard approximate == "none" || approximate == "tanh" else {
        throw invalid("unknown approximate '\(approximate)'")
      }
      op = .activation(.gelu(tanhApproximation: approximate == "tanh"))
    case "Clip":
      let low: Float
      let high: Float
      if opset < 11 {
        low = attributes.float("min", -Float.greatestFiniteMagnitude)
        high = attributes.float("max", Float.greatestFiniteMagnitude)
      } else {
        low = try constantScalar(1, "min") ?? -Float.infinity
        high = try constantScalar(2, "max") ?? Float.infinity
      }
      op = .activation(.clip(min: low, max: high))
    case "Softmax":
      op = .softmax(axis: try attributes.int("axis", opset < 13 ? 1 : -1), coerceTo2D: opset < 13)
    case "BatchNormalization":
      nodeInputs = [data, try required(1), try required(2), try required(3), try required(4)]
      if proto.output.dropFirst().contains(where: read.contains) {
        throw invalid("the training-mode outputs are read, which is not supported")
      }
      op = .batchNormalization(epsilon: attributes.float("epsilon", 1e-5))
    case "MaxPool", "AveragePool":
      guard let kernel = try attributes.ints("kernel_shape") else {
        throw invalid("needs kernel_shape")
      }
      if proto.opType == "MaxPool", proto.output.count > 1, read.contains(proto.output[1]) {
        throw invalid("the Indices output is read, which is not supported")
      }
      if try attributes.int("storage_order", 0) != 0 {
        throw invalid("storage_order 1 is not supported")
      }
      let pooling = Pooling(
        kernelShape: kernel, strides: try attributes.ints("strides") ?? [],
        pads: try attributes.ints("pads") ?? [], dilations: try attributes.ints("dilations") ?? [],
        ceilMode: try attributes.int("ceil_mode", 0) != 0,
        countIncludePad: try attributes.int("count_include_pad", 0) != 0,
        autoPad: try autoPad(attributes, invalid))
      op = proto.opType == "MaxPool" ? .maxPool(pooling) : .averagePool(pooling)
    case "GlobalAveragePool": op = .globalAveragePool
    case "ReduceMean":
      let keepDims = try attributes.int("keepdims", 1) != 0
      var axes: [Int]? = try attributes.ints("axes")
      if opset >= 18 {
        axes = try constantInts(1, "axes")
        if axes?.isEmpty ?? true, try attributes.int("noop_with_empty_axes", 0) != 0 {
          op = .identity
          break
        }
      }
      op = .reduceMean(axes: (axes?.isEmpty ?? true) ? nil : axes, keepDims: keepDims)
    case "Flatten": op = .flatten(axis: try attributes.int("axis", 1))
    case "Reshape":
      let shape = try required(1)
      let allowZero = try attributes.int("allowzero", 0) != 0
      if let t = constant(shape) {
        guard let v = t.integers else { throw invalid("shape must be int64") }
        op = .reshape(shape: v.map { Int($0) }, allowZero: allowZero)
      } else {
        nodeInputs.append(shape)
        op = .reshape(shape: nil, allowZero: allowZero)
      }
    case "Transpose": op = .transpose(perm: try attributes.ints("perm"))
    case "Squeeze":
      let axes = opset < 13 ? try attributes.ints("axes") : try constantInts(1, "axes")
      op = .squeeze(axes: (axes?.isEmpty ?? true) ? nil : axes)
    case "Unsqueeze":
      let axes = opset < 13 ? try attributes.ints("axes") : try constantInts(1, "axes")
      guard let axes, !axes.isEmpty else { throw invalid("needs axes") }
      op = .unsqueeze(axes: axes)
    case "Concat":
      nodeInputs = try (0..<inputs.count).map { try required($0) }
      op = .concat(axis: try attributes.int("axis", 0))
    case "Split":
      let sizes = opset < 13 ? try attributes.ints("split") : try constantInts(1, "split")
      outputCount = proto.output.count
      op = .split(
        axis: try attributes.int("axis", 0), sizes: (sizes?.isEmpty ?? true) ? nil : sizes)
    case "Slice":
      if opset < 10 {
        guard let starts = try attributes.ints("starts"), let ends = try attributes.ints("ends")
        else {
          throw invalid("needs starts and ends")
        }
        op = .slice(starts: starts, ends: ends, axes: try attributes.ints("axes"), steps: nil)
      } else {
        let axes = try constantInts(3, "axes")
        let steps = try constantInts(4, "steps")
        let startsID = try required(1)
        let endsID = try required(2)
        if let s = constant(startsID)?.integers, let e = constant(endsID)?.integers {
          op = .slice(
            starts: s.map(GraphPasses.clampedIndex), ends: e.map(GraphPasses.clampedIndex),
            axes: axes,
            steps: steps)
        } else {
          nodeInputs += [startsID, endsID]
          op = .slice(starts: nil, ends: nil, axes: axes, steps: steps)
        }
      }
    case "Pad":
      let modeName = attributes.string("mode") ?? "constant"
      guard let mode = PadMode(rawValue: modeName) else {
        throw invalid("mode '\(modeName)' is not supported")
      }
      if opset < 11 {
        guard let pads = try attributes.ints("pads") ?? attributes.ints("paddings") else {
          throw invalid("needs pads")
        }
        op = .pad(mode: mode, pads: pads, value: attributes.float("value", 0))
      } else {
        if input(3) != nil { throw invalid("the axes input is not supported") }
        let value = try constantScalar(2, "constant_value") ?? 0
        let padsID = try required(1)
        if let p = constant(padsID)?.integers {
          op = .pad(mode: mode, pads: p.map { Int($0) }, value: value)
        } else {
          nodeInputs.append(padsID)
          op = .pad(mode: mode, pads: nil, value: value)
        }
      }
    case "Identity", "Dropout":
      if proto.opType == "Dropout", proto.output.count > 1, read.contains(proto.output[1]) {
        throw invalid("the mask output is read, which is not supported")
      }
      op = .identity
    case "Shape":
      op = .shape(
        start: try attributes.int("start", 0),
        end: attributes.has("end") ? try attributes.int("end", 0) : nil)
    case "Gather":
      nodeInputs = [data, try required(1)]
      op = .gather(axis: try attributes.int("axis", 0))
    case "Cast":
      let to = try attributes.int("to", 0)
      guard let type = Self.elementType(Int32(clamping: to)) ?? (to == 11 ? .float32 : nil) else {
        throw invalid("cast to ONNX type \(to) is not supported")
      }
      op = .cast(to: type)
    case "QuantizeLinear", "DequantizeLinear":
      nodeInputs = [data, try required(1)]
      if let z = input(2) { nodeInputs.append(z) }
      let axis = try attributes.int("axis", 1)
      op =
        proto.opType == "QuantizeLinear"
        ? .quantizeLinear(axis: axis) : .dequantizeLinear(axis: axis)
    default:
      throw ModelError(.unsupportedOperators, "\(context): unsupported operator")
    }

    guard proto.output.count >= outputCount, !proto.output[0].isEmpty else {
      throw invalid("expects \(outputCount) output(s)")
    }
    var outputs: [ValueID] = []
    for name in proto.output.prefix(outputCount) {
      try define(name, context: context)
      let type: ElementType
      switch op {
      case .shape: type = .int64
      case .cast(let t): type = t
      case .quantizeLinear:
        // The zero point's type decides the output type; without one ONNX quantises to uint8.
        type =
          nodeInputs.count > 2 && graph.values[nodeInputs[2]].elementType == .int8 ? .int8 : .uint8
      case .dequantizeLinear: type = .float32
      default: type = graph.values[data].elementType
      }
      let id = graph.addValue(Value(name: name, elementType: type))
      ids[name] = id
      outputs.append(id)
    }
    graph.nodes.append(Node(name: nodeName, op: op, inputs: nodeInputs, outputs: outputs))
  }

  private func define(_ name: String, context: String) throws {
    guard ids[name] == nil else {
      throw ModelError(.invalidGraph, "\(context): output '\(name)' is already defined")
    }
  }

  private func autoPad(_ attributes: AttributeReader, _ invalid: (String) -> ModelError) throws
    -> AutoPad
  {
    switch attributes.string("auto_pad") ?? "NOTSET" {
    case "NOTSET", "": return .explicit
    case "SAME_UPPER": return .sameUpper
    case "SAME_LOWER": return .sameLower
    case "VALID": return .valid
    case let other: throw invalid("unknown auto_pad '\(other)'")
    }
  }
}
