import Foundation
import Model

/// An `--model` that is already quantized (QDQ or QOperator): the int8 engine runs it with
/// the scales, zero points and codes it holds (`Int8Engine(quantizedGraph:)`), so nothing is
/// calibrated, and reports describe the model's own quantization instead of calibration
/// settings.
struct ImportedQuantization {
  /// How the file spells its quantization.
  enum Format: String {
    /// QuantizeLinear/DequantizeLinear around float ops.
    case qdq = "QDQ"
    /// QLinearConv, ConvInteger, QGemm and the other integer operators.
    case qOperator = "QOperator"
  }

  /// The file's quantization format.
  let format: Format
  /// The quantization operators of the file's main graph and how often each occurs
  /// (`com.microsoft:QLinearAdd` for ops outside the default domain).
  let operatorCounts: [String: Int]

  /// The operators that make a model QOperator-format (the default domain's and onnxruntime's
  /// contrib ops); a file holding only QuantizeLinear/DequantizeLinear is QDQ.
  static let qOperatorOps: Set<String> = [
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "com.microsoft:QGemm",
    "com.microsoft:QLinearAdd", "com.microsoft:QLinearMul",
    "com.microsoft:QLinearGlobalAveragePool", "com.microsoft:QLinearAveragePool",
    "com.microsoft:QLinearConcat", "com.microsoft:QLinearSigmoid",
    "com.microsoft:QLinearLeakyRelu",
  ]

  /// Reads the operator types of the ONNX file at `path` (which the loader has already
  /// accepted as quantized) to tell QDQ from QOperator.
  ///
  /// The graph the loader returns has QOperator nodes rewritten into QDQ, so the format is
  /// only visible in the file itself.
  init(modelAt path: String) throws {
    let data: Data
    do {
      data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
    } catch {
      throw EvalError(.input, "--model: cannot read \(path): \(error.localizedDescription)")
    }
    let counts = try ONNXOperatorScan.operatorCounts(data, path: path)
    let quantizing: Set<String> = ["QuantizeLinear", "DequantizeLinear"]
    operatorCounts = counts.filter {
      quantizing.contains($0.key) || Self.qOperatorOps.contains($0.key)
    }
    format = operatorCounts.keys.contains(where: Self.qOperatorOps.contains) ? .qOperator : .qdq
  }

  /// Why a run of an imported model has no layer report.
  static let noLayerReport =
    "not available: the model came quantized, so there is no float model to compare each "
    + "int8 layer with (run the float model with --engines float,int8 for one)"

  /// One line for summaries and stderr, e.g. `imported quantized model (QDQ, 5 integer nodes,
  /// 1 float fallback node: Softmax_3)`.
  func headline(_ engine: Int8Engine) -> String {
    let fallback = engine.floatFallbackNodes
    let fallbackText =
      fallback.isEmpty
      ? "no float fallback nodes"
      : "\(fallback.count) float fallback node\(fallback.count == 1 ? "" : "s"): "
        + fallback.joined(separator: ", ")
    return "imported quantized model (\(format.rawValue), \(engine.quantizedNodes.count) "
      + "integer node\(engine.quantizedNodes.count == 1 ? "" : "s"), \(fallbackText))"
  }

  /// The int8 engine's entry of the run manifest (`calibration`) for an imported model: the
  /// model's quantization in place of calibration settings, and `entries` (the input path of
  /// `--int8-color`).
  func describe(_ engine: Int8Engine, entries: [String: String] = [:]) -> [String: String] {
    var result = [
      "quantization": headline(engine),
      "format": format.rawValue,
      "method": "none (scales and zero points from the quantized model)",
      "source": "the quantized model itself; no calibration images",
      "quantized_nodes": String(engine.quantizedNodes.count),
      "float_fallback_nodes": engine.floatFallbackNodes.joined(separator: ","),
      "model_operators": operatorCounts.keys.sorted().map { "\($0) \(operatorCounts[$0]!)" }
        .joined(separator: ", "),
      "layer_report": Self.noLayerReport,
    ]
    for (key, value) in entries { result[key] = value }
    return result
  }
}

/// The operator types of an ONNX model's main graph, read straight from the protobuf wire
/// format (ModelProto.graph = 7, GraphProto.node = 1, NodeProto.op_type = 4, domain = 7).
///
/// Only what `ImportedQuantization` needs; the model itself is loaded by `ONNXLoader`.
enum ONNXOperatorScan {
  /// `op_type` counts, prefixed `domain:` outside the default domain (`""` or `ai.onnx`).
  static func operatorCounts(_ data: Data, path: String) throws -> [String: Int] {
    try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> [String: Int] in
      var counts: [String: Int] = [:]
      var model = WireReader(bytes: bytes, range: 0..<bytes.count, path: path)
      while let (field, wireType) = try model.nextField() {
        guard field == 7, wireType == 2 else {
          try model.skip(wireType)
          continue
        }
        var graph = WireReader(bytes: bytes, range: try model.lengthDelimited(), path: path)
        while let (field, wireType) = try graph.nextField() {
          guard field == 1, wireType == 2 else {
            try graph.skip(wireType)
            continue
          }
          var node = WireReader(bytes: bytes, range: try graph.lengthDelimited(), path: path)
          var opType = ""
          var domain = ""
          while let (field, wireType) = try node.nextField() {
            if wireType == 2 && (field == 4 || field == 7) {
              let text = String(decoding: bytes[try node.lengthDelimited()], as: UTF8.self)
              if field == 4 { opType = text } else { domain = text }
            } else {
              try node.skip(wireType)
            }
          }
          let key = domain.isEmpty || domain == "ai.onnx" ? opType : "\(domain):\(opType)"
          counts[key, default: 0] += 1
        }
      }
      return counts
    }
  }

  /// A cursor over one message's bytes.
  private struct WireReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int
    let end: Int
    let path: String

    init(bytes: UnsafeRawBufferPointer, range: Range<Int>, path: String) {
      self.bytes = bytes
      position = range.lowerBound
      end = range.upperBound
      self.path = path
    }

    func malformed(_ what: String) -> EvalError {
      EvalError(.input, "--model: \(path): malformed protobuf at byte \(position): \(what)")
    }

    mutating func varint() throws -> UInt64 {
      var value: UInt64 = 0
      var shift: UInt64 = 0
      while position < end, shift < 64 {
        let byte = bytes[position]
        position += 1
        value |= UInt64(byte & 0x7F) << shift
        if byte & 0x80 == 0 { return value }
        shift += 7
      }
      throw malformed("truncated varint")
    }

    /// The next field's number and wire type, nil at the end of the message.
    mutating func nextField() throws -> (Int, Int)? {
      guard position < end else { return nil }
      let key = try varint()
      return (Int(key >> 3), Int(key & 7))
    }

    mutating func lengthDelimited() throws -> Range<Int> {
      let length = try varint()
      guard length <= UInt64(end - position) else { throw malformed("length past the end") }
      let range = position..<position + Int(length)
      position = range.upperBound
      return range
    }

    mutating func skip(_ wireType: Int) throws {
      switch wireType {
      case 0: _ = try varint()
      case 1, 5:
        let width = wireType == 1 ? 8 : 4
        guard end - position >= width else { throw malformed("truncated fixed-width field") }
        position += width
      case 2: _ = try lengthDelimited()
      default: throw malformed("unsupported wire type \(wireType)")
      }
    }
  }
}
