import Foundation

/// A scalar type that can live in a `.npy` file.
public protocol NumpyScalar: Sendable {
  /// The little-endian numpy `descr` of this type, e.g. `<f4`.
  static var numpyType: NumpyArray.DType { get }
}

extension Float: NumpyScalar { public static var numpyType: NumpyArray.DType { .float32 } }
extension Double: NumpyScalar { public static var numpyType: NumpyArray.DType { .float64 } }
extension UInt8: NumpyScalar { public static var numpyType: NumpyArray.DType { .uint8 } }
extension Int32: NumpyScalar { public static var numpyType: NumpyArray.DType { .int32 } }
extension Int64: NumpyScalar { public static var numpyType: NumpyArray.DType { .int64 } }

/// An n-dimensional C-order array as stored in a `.npy` file: dtype, shape and the raw
/// little-endian bytes.
public struct NumpyArray: Equatable, Sendable {
  /// The element types supported (little-endian, as numpy writes them on every common host).
  public enum DType: String, Sendable, CaseIterable {
    case float32 = "<f4"
    case float64 = "<f8"
    case uint8 = "|u1"
    case int32 = "<i4"
    case int64 = "<i8"

    /// Bytes per element.
    public var size: Int {
      switch self {
      case .uint8: return 1
      case .float32, .int32: return 4
      case .float64, .int64: return 8
      }
    }
  }

  /// Element type.
  public var dtype: DType
  /// Dimensions, outermost first; `[]` is a scalar.
  public var shape: [Int]
  /// `shape.reduce(1, *) * dtype.size` bytes, little-endian, C order.
  public var bytes: [UInt8]

  /// Number of elements.
  public var count: Int { shape.reduce(1, *) }

  /// Wraps raw bytes; throws when their length does not match the shape.
  public init(dtype: DType, shape: [Int], bytes: [UInt8]) throws {
    guard shape.allSatisfy({ $0 >= 0 }) else {
      throw NumpyFileError(file: "<memory>", reason: "negative dimension in shape \(shape)")
    }
    let expected = shape.reduce(1, *) * dtype.size
    guard bytes.count == expected else {
      throw NumpyFileError(
        file: "<memory>",
        reason: "shape \(shape) of \(dtype.rawValue) needs \(expected) bytes, got \(bytes.count)")
    }
    self.dtype = dtype
    self.shape = shape
    self.bytes = bytes
  }

  /// Makes an array from typed values in C order.
  public init<T: NumpyScalar>(shape: [Int], values: [T]) throws {
    let raw = values.withUnsafeBytes { Array($0) }
    try self.init(dtype: T.numpyType, shape: shape, bytes: raw)
  }

  /// The elements as `T`; the dtype must be `T`'s exactly.
  public func values<T: NumpyScalar>(as type: T.Type) throws -> [T] {
    guard dtype == T.numpyType else {
      throw NumpyFileError(
        file: "<memory>",
        reason: "array holds \(dtype.rawValue), asked for \(T.numpyType.rawValue)")
    }
    return [T](unsafeUninitializedCapacity: count) { buffer, initialised in
      if let target = buffer.baseAddress, count > 0 {
        bytes.withUnsafeBytes { raw in
          if let source = raw.baseAddress { _ = memcpy(target, source, raw.count) }
        }
      }
      initialised = count
    }
  }

  /// The elements converted to Float, whatever the numeric dtype.
  public func floatValues() -> [Float] {
    bytes.withUnsafeBytes { raw in
      switch dtype {
      case .float32:
        return (0..<count).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
      case .float64:
        return (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
      case .uint8: return raw.map { Float($0) }
      case .int32:
        return (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
      case .int64:
        return (0..<count).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
      }
    }
  }
}

/// A `.npy` file that cannot be read or written, naming the file and what is wrong with it.
public struct NumpyFileError: Error, CustomStringConvertible, Equatable {
  /// The file (or `<memory>`).
  public let file: String
  /// What is wrong.
  public let reason: String
  /// `file: reason`.
  public var description: String { "\(file): \(reason)" }
}

/// Reads and writes numpy's `.npy` format (versions 1.0, 2.0 and 3.0) for C-order,
/// little-endian arrays of the dtypes in `NumpyArray.DType`.
public enum NumpyFile {
  private static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

  /// Reads a `.npy` file.
  public static func read(_ url: URL) throws -> NumpyArray {
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw NumpyFileError(file: url.path, reason: "cannot read: \(error.localizedDescription)")
    }
    return try decode([UInt8](data), name: url.path)
  }

  /// Writes `array` as a version 1.0 `.npy` (2.0 when the header needs more than 65535 bytes).
  public static func write(_ array: NumpyArray, to url: URL) throws {
    do {
      try Data(encode(array)).write(to: url)
    } catch {
      throw NumpyFileError(file: url.path, reason: "cannot write: \(error.localizedDescription)")
    }
  }

  /// The bytes of a `.npy` file holding `array`; the header is padded so data starts on a
  /// 64-byte boundary, as numpy does.
  public static func encode(_ array: NumpyArray) -> [UInt8] {
    let shapeText: String
    switch array.shape.count {
    case 0: shapeText = "()"
    case 1: shapeText = "(\(array.shape[0]),)"
    default: shapeText = "(" + array.shape.map(String.init).joined(separator: ", ") + ")"
    }
    var header =
      "{'descr': '\(array.dtype.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
    let version: UInt8 = header.utf8.count + 12 > 65535 ? 2 : 1
    let prefix = magic.count + 2 + (version == 1 ? 2 : 4)
    let padding = (64 - (prefix + header.utf8.count + 1) % 64) % 64
    header += String(repeating: " ", count: padding) + "\n"
    var out = magic + [version, 0]
    let length = header.utf8.count
    if version == 1 {
      out += [UInt8(length & 0xFF), UInt8(length >> 8)]
    } else {
      out += (0..<4).map { UInt8((length >> (8 * $0)) & 0xFF) }
    }
    out += Array(header.utf8)
    out += array.bytes
    return out
  }

  /// Parses the bytes of a `.npy` file; `name` appears in errors.
  public static func decode(_ bytes: [UInt8], name: String = "<memory>") throws -> NumpyArray {
    func fail(_ reason: String) -> NumpyFileError { NumpyFileError(file: name, reason: reason) }
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
      throw fail("not a .npy file (missing \\x93NUMPY magic)")
    }
    let major = bytes[6]
    let headerStart: Int
    let headerLength: Int
    switch major {
    case 1:
      headerStart = 10
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
    case 2, 3:
      guard bytes.count >= 12 else { throw fail("truncated header") }
      headerStart = 12
      headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
    default:
      throw fail("unsupported .npy version \(major).\(bytes[7])")
    }
    guard headerStart + headerLength <= bytes.count else {
      throw fail("truncated header (needs \(headerLength) bytes)")
    }
    let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
    let descr = try field("descr", in: header, name: name)
    let fortran = try field("fortran_order", in: header, name: name)
    let shapeText = try field("shape", in: header, name: name)

    let typeText = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
    guard !typeText.hasPrefix(">") || typeText.hasSuffix("1") else {
      throw fail("big-endian dtype '\(typeText)' is not supported; save little-endian data")
    }
    let normalised = typeText == "<u1" || typeText == "=u1" || typeText == "u1" ? "|u1" : typeText
    guard let dtype = NumpyArray.DType(rawValue: normalised) else {
      throw fail(
        "unsupported dtype '\(typeText)'; supported: "
          + NumpyArray.DType.allCases.map(\.rawValue).joined(separator: ", "))
    }
    switch fortran {
    case "False": break
    case "True":
      throw fail("Fortran-order arrays are not supported; save with np.ascontiguousarray")
    default: throw fail("bad fortran_order value '\(fortran)'")
    }
    let inner = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
    var shape: [Int] = []
    for part in inner.split(separator: ",") {
      let trimmed = part.trimmingCharacters(in: .whitespaces)
      if trimmed.isEmpty { continue }
      guard let dimension = Int(trimmed), dimension >= 0 else {
        throw fail("bad shape \(shapeText)")
      }
      shape.append(dimension)
    }
    let dataStart = headerStart + headerLength
    let (elements, overflow) = shape.reduce((1, false)) { partial, dimension in
      let product = partial.0.multipliedReportingOverflow(by: dimension)
      return (product.partialValue, partial.1 || product.overflow)
    }
    guard !overflow, elements <= Int.max / dtype.size else {
      throw fail("shape \(shape) too large")
    }
    let needed = elements * dtype.size
    let available = bytes.count - dataStart
    guard available >= needed else {
      throw fail(
        "truncated data: shape \(shape) of \(dtype.rawValue) needs \(needed) bytes, file has \(available)"
      )
    }
    guard available == needed else {
      throw fail("\(available - needed) unexpected bytes after the data of shape \(shape)")
    }
    return try NumpyArray(dtype: dtype, shape: shape, bytes: Array(bytes[dataStart...]))
  }

  /// The raw text of one value in numpy's header dict (quoted strings keep their quotes).
  private static func field(_ key: String, in header: String, name: String) throws -> String {
    guard let keyRange = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\""),
      let colon = header[keyRange.upperBound...].firstIndex(of: ":")
    else {
      throw NumpyFileError(file: name, reason: "header has no '\(key)': \(header)")
    }
    var rest = header[header.index(after: colon)...].drop { $0 == " " }
    if rest.first == "(" {
      guard let close = rest.firstIndex(of: ")") else {
        throw NumpyFileError(file: name, reason: "unterminated shape in header: \(header)")
      }
      return String(rest[...close])
    }
    if let quote = rest.first, quote == "'" || quote == "\"" {
      rest = rest.dropFirst()
      guard let end = rest.firstIndex(of: quote) else {
        throw NumpyFileError(file: name, reason: "unterminated string in header: \(header)")
      }
      return String(quote) + rest[..<end] + String(quote)
    }
    let end = rest.firstIndex { $0 == "," || $0 == "}" } ?? rest.endIndex
    return rest[..<end].trimmingCharacters(in: .whitespaces)
  }
}
