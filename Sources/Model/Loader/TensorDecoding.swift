import Foundation

/// Converts ONNX `TensorProto`s into `Tensor`s, validating sizes before allocating and reading
/// external data only from inside the model's directory.
struct TensorDecoder {
  /// The largest tensor accepted, in bytes (weights of an image classifier are far below).
  static let maxTensorBytes = 1 << 31
  /// The directory external data must stay inside; nil when loading from memory.
  let modelDirectory: URL?
  /// The model file name, for messages.
  let fileName: String

  func decode(_ proto: Onnx_TensorProto, name: String) throws -> Tensor {
    func fail(_ reason: String) -> ModelError {
      ModelError(.invalidTensor, "\(fileName): tensor '\(name)': \(reason)")
    }
    var shape: [Int] = []
    var count = 1
    for dim in proto.dims {
      guard dim >= 0, dim <= Int64(Int32.max) else { throw fail("invalid dimension \(dim)") }
      let (product, overflow) = count.multipliedReportingOverflow(by: Int(dim))
      guard !overflow, product <= Self.maxTensorBytes else {
        throw fail("dimensions \(proto.dims) are too large")
      }
      count = product
      shape.append(Int(dim))
    }
    guard let type = Onnx_TensorProto.DataType(rawValue: Int(proto.dataType)) else {
      throw fail("unknown data type \(proto.dataType)")
    }
    let elementSize: Int
    switch type {
    case .float, .int32: elementSize = 4
    case .int64, .double: elementSize = 8
    case .int8, .uint8: elementSize = 1
    default:
      throw fail(
        "data type \(type) is not supported (float, double, int64, int32, int8, uint8 are)")
    }
    guard count * elementSize <= Self.maxTensorBytes else {
      throw fail("\(count) elements is too large")
    }

    var raw: Data?
    if proto.hasDataLocation, proto.dataLocation == .external {
      raw = try readExternal(proto, name: name, byteCount: count * elementSize)
    } else if proto.hasRawData {
      raw = proto.rawData
    }
    if let raw {
      guard raw.count == count * elementSize else {
        throw fail("raw data has \(raw.count) bytes, shape \(shape) needs \(count * elementSize)")
      }
      switch type {
      case .float: return Tensor(shape: shape, storage: .float32(Self.load(raw, count, Float.self)))
      case .double:
        return Tensor(shape: shape, floats: Self.load(raw, count, Double.self).map { Float($0) })
      case .int64: return Tensor(shape: shape, storage: .int64(Self.load(raw, count, Int64.self)))
      case .int32: return Tensor(shape: shape, storage: .int32(Self.load(raw, count, Int32.self)))
      case .int8: return Tensor(shape: shape, storage: .int8(Self.load(raw, count, Int8.self)))
      default: return Tensor(shape: shape, storage: .uint8(Self.load(raw, count, UInt8.self)))
      }
    }
    func check(_ n: Int) throws {
      guard n == count else { throw fail("has \(n) elements, shape \(shape) needs \(count)") }
    }
    switch type {
    case .float:
      try check(proto.floatData.count)
      return Tensor(shape: shape, floats: proto.floatData)
    case .double:
      try check(proto.doubleData.count)
      return Tensor(shape: shape, floats: proto.doubleData.map { Float($0) })
    case .int64:
      try check(proto.int64Data.count)
      return Tensor(shape: shape, int64s: proto.int64Data)
    case .int32:
      try check(proto.int32Data.count)
      return Tensor(shape: shape, storage: .int32(proto.int32Data))
    case .int8:
      try check(proto.int32Data.count)
      return Tensor(
        shape: shape, storage: .int8(proto.int32Data.map { Int8(truncatingIfNeeded: $0) }))
    default:
      try check(proto.int32Data.count)
      return Tensor(
        shape: shape, storage: .uint8(proto.int32Data.map { UInt8(truncatingIfNeeded: $0) }))
    }
  }

  private static func load<T>(_ data: Data, _ count: Int, _: T.Type) -> [T] {
    // ONNX raw data is little-endian, as are all platforms this tool targets.
    [T](unsafeUninitializedCapacity: count) { buffer, initialized in
      data.withUnsafeBytes { bytes in
        let target = UnsafeMutableRawBufferPointer(buffer)
        target.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<target.count]))
      }
      initialized = count
    }
  }

  private func readExternal(_ proto: Onnx_TensorProto, name: String, byteCount: Int) throws -> Data
  {
    func fail(_ reason: String) -> ModelError {
      ModelError(.unsafeExternalData, "\(fileName): tensor '\(name)': external data \(reason)")
    }
    var location: String?
    var offset = 0
    var length: Int?
    for entry in proto.externalData {
      switch entry.key {
      case "location": location = entry.value
      case "offset":
        guard let v = Int(entry.value), v >= 0 else {
          throw fail("has invalid offset '\(entry.value)'")
        }
        offset = v
      case "length":
        guard let v = Int(entry.value), v >= 0 else {
          throw fail("has invalid length '\(entry.value)'")
        }
        length = v
      default: break
      }
    }
    guard let location, !location.isEmpty else { throw fail("has no location") }
    guard let directory = modelDirectory else {
      throw fail("'\(location)' cannot be resolved for a model loaded from memory")
    }
    let components = location.split(separator: "/", omittingEmptySubsequences: false)
    guard !location.hasPrefix("/"), !location.contains("\\"), !location.contains(":"),
      !components.contains("..")
    else {
      throw fail("location '\(location)' must be a relative path inside the model's directory")
    }
    let root = directory.resolvingSymlinksInPath().standardizedFileURL.path
    let file = directory.appendingPathComponent(location).resolvingSymlinksInPath()
      .standardizedFileURL.path
    guard file.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
      throw fail(
        "location '\(location)' resolves to '\(file)', outside the model's directory '\(root)'")
    }
    if let length, length != byteCount {
      throw fail("length \(length) does not match the \(byteCount) bytes the shape needs")
    }
    guard let handle = FileHandle(forReadingAtPath: file) else {
      throw fail("file '\(location)' cannot be opened")
    }
    defer { try? handle.close() }
    let size = (try? handle.seekToEnd()) ?? 0
    guard offset <= Int(size), byteCount <= Int(size) - offset else {
      throw fail("'\(location)' has \(size) bytes, too few for \(byteCount) at offset \(offset)")
    }
    try handle.seek(toOffset: UInt64(offset))
    guard let data = try handle.read(upToCount: byteCount), data.count == byteCount else {
      throw fail("'\(location)' could not be read")
    }
    return data
  }
}
