import Foundation
import SwiftProtobuf

/// Builds an ONNX `ModelProto` node by node: unique tensor and node names, initializers from
/// `Tensor`s (little-endian `raw_data`), typed attributes. The counterpart of `ONNXLoader`,
/// used by the QDQ export.
struct ONNXWriter {
  /// An attribute value, typed as ONNX stores it.
  enum AttributeValue {
    case int(Int)
    case ints([Int])
    case float(Float)
    case string(String)
  }

  private(set) var graph = Onnx_GraphProto()
  private var tensorNames = Set<String>()
  private var nodeNames = Set<String>()

  init(graphName: String) {
    graph.name = graphName
  }

  /// Marks `name` as taken (a name the caller must keep, such as a graph input).
  mutating func reserve(_ name: String) {
    tensorNames.insert(name)
  }

  /// `base` if no tensor uses it yet, else `base_2`, `base_3`, …; the result is reserved.
  mutating func uniqueName(_ base: String) -> String {
    Self.reserveUnique(base, in: &tensorNames)
  }

  /// `base` if `names` lacks it, else the first of `base_2`, `base_3`, … it lacks; the result
  /// is added to `names`.
  private static func reserveUnique(_ base: String, in names: inout Set<String>) -> String {
    var name = base
    var suffix = 2
    while names.contains(name) {
      name = "\(base)_\(suffix)"
      suffix += 1
    }
    names.insert(name)
    return name
  }

  /// Adds `tensor` as an initializer under a unique name derived from `name`; returns it.
  @discardableResult
  mutating func addInitializer(_ tensor: Tensor, name: String) -> String {
    let unique = uniqueName(name)
    graph.initializer.append(Self.tensorProto(tensor, name: unique))
    return unique
  }

  /// Adds an initializer under exactly `name`, which the caller has reserved.
  mutating func addInitializer(_ tensor: Tensor, reservedName name: String) {
    graph.initializer.append(Self.tensorProto(tensor, name: name))
  }

  /// Appends a node; `name` is made unique among node names. An empty input name marks an
  /// omitted optional input.
  mutating func addNode(
    _ opType: String, name: String, inputs: [String], outputs: [String],
    attributes: [(String, AttributeValue)] = []
  ) {
    var node = Onnx_NodeProto()
    node.opType = opType
    node.name = Self.reserveUnique(name, in: &nodeNames)
    node.input = inputs
    node.output = outputs
    node.attribute = attributes.map { Self.attribute($0.0, $0.1) }
    graph.node.append(node)
  }

  /// Declares a graph input of `type` with `dimensions` (`.symbolic` for a batch dimension).
  mutating func addInput(name: String, type: ElementType, dimensions: [DeclaredDimension]) {
    graph.input.append(Self.valueInfo(name: name, type: type, dimensions: dimensions))
  }

  /// Declares a graph output.
  mutating func addOutput(name: String, type: ElementType, dimensions: [DeclaredDimension]?) {
    graph.output.append(Self.valueInfo(name: name, type: type, dimensions: dimensions))
  }

  /// The model: this graph importing the default-domain `opset`.
  func model(
    opset: Int, irVersion: Int, producerName: String, producerVersion: String,
    docString: String, metadata: [String: String]
  ) -> Onnx_ModelProto {
    var model = Onnx_ModelProto()
    model.irVersion = Int64(irVersion)
    var entry = Onnx_OperatorSetIdProto()
    entry.domain = ""
    entry.version = Int64(opset)
    model.opsetImport = [entry]
    model.producerName = producerName
    model.producerVersion = producerVersion
    model.docString = docString
    model.metadataProps = metadata.sorted { $0.key < $1.key }.map { key, value in
      var property = Onnx_StringStringEntryProto()
      property.key = key
      property.value = value
      return property
    }
    model.graph = graph
    return model
  }

  /// The ONNX `TensorProto.DataType` code of an element type.
  static func dataType(_ type: ElementType) -> Int32 {
    switch type {
    case .float32: Int32(Onnx_TensorProto.DataType.float.rawValue)
    case .uint8: Int32(Onnx_TensorProto.DataType.uint8.rawValue)
    case .int8: Int32(Onnx_TensorProto.DataType.int8.rawValue)
    case .int32: Int32(Onnx_TensorProto.DataType.int32.rawValue)
    case .int64: Int32(Onnx_TensorProto.DataType.int64.rawValue)
    }
  }

  /// `tensor` as a `TensorProto` with little-endian `raw_data` (the ONNX byte order).
  static func tensorProto(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
    var proto = Onnx_TensorProto()
    proto.name = name
    proto.dims = tensor.shape.map(Int64.init)
    proto.dataType = dataType(tensor.elementType)
    func bytes<T: FixedWidthInteger>(_ values: [T]) -> Data {
      var data = Data(capacity: values.count * MemoryLayout<T>.size)
      for value in values {
        withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
      }
      return data
    }
    switch tensor.storage {
    case .float32(let v): proto.rawData = bytes(v.map(\.bitPattern))
    case .int64(let v): proto.rawData = bytes(v)
    case .int32(let v): proto.rawData = bytes(v)
    case .int8(let v): proto.rawData = bytes(v)
    case .uint8(let v): proto.rawData = Data(v)
    }
    return proto
  }

  private static func valueInfo(name: String, type: ElementType, dimensions: [DeclaredDimension]?)
    -> Onnx_ValueInfoProto
  {
    var tensorType = Onnx_TypeProto.Tensor()
    tensorType.elemType = dataType(type)
    if let dimensions {
      var shape = Onnx_TensorShapeProto()
      shape.dim = dimensions.map { dimension in
        var d = Onnx_TensorShapeProto.Dimension()
        switch dimension {
        case .fixed(let v): d.dimValue = Int64(v)
        case .symbolic(let p): d.dimParam = p
        }
        return d
      }
      tensorType.shape = shape
    }
    var typeProto = Onnx_TypeProto()
    typeProto.tensorType = tensorType
    var info = Onnx_ValueInfoProto()
    info.name = name
    info.type = typeProto
    return info
  }

  private static func attribute(_ name: String, _ value: AttributeValue) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    switch value {
    case .int(let v):
      a.type = .int
      a.i = Int64(v)
    case .ints(let v):
      a.type = .ints
      a.ints = v.map(Int64.init)
    case .float(let v):
      a.type = .float
      a.f = v
    case .string(let v):
      a.type = .string
      a.s = Data(v.utf8)
    }
    return a
  }
}
