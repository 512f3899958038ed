import Foundation

/// A minimal reader for the `.npy` files the reference scripts write (little-endian float32,
/// int64 and int32, C order). Stand-in until the Dataset module's NumpyFile is merged.
public struct Npy {
  /// Dimensions, outermost first.
  public let shape: [Int]
  /// The elements as floats (integers converted).
  public let floats: [Float]
  /// The elements as int64 when the file holds integers.
  public let int64s: [Int64]?

  public struct FormatError: Error, CustomStringConvertible {
    public let description: String
  }

  /// Reads `url`, throwing a `FormatError` naming the file on anything unexpected.
  public init(contentsOf url: URL) throws {
    let data = try Data(contentsOf: url)
    func fail(_ reason: String) -> FormatError {
      FormatError(description: "\(url.path): \(reason)")
    }
    let bytes = [UInt8](data)
    guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
      throw fail("not an .npy file")
    }
    let major = bytes[6]
    let headerLength: Int
    let headerStart: Int
    if major == 1 {
      headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
      headerStart = 10
    } else {
      guard bytes.count >= 12 else { throw fail("truncated header") }
      headerLength =
        Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
      headerStart = 12
    }
    guard headerStart + headerLength <= bytes.count else { throw fail("truncated header") }
    let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
    guard !header.contains("'fortran_order': True") else {
      throw fail("Fortran order is not supported")
    }
    guard let descrRange = header.range(of: "'descr': '"),
      let descrEnd = header[descrRange.upperBound...].firstIndex(of: "'"),
      let shapeOpen = header.range(of: "'shape': ("),
      let shapeClose = header[shapeOpen.upperBound...].firstIndex(of: ")")
    else { throw fail("malformed header \(header)") }
    let descr = String(header[descrRange.upperBound..<descrEnd])
    let dims = try header[shapeOpen.upperBound..<shapeClose].split(separator: ",").map {
      guard let v = Int($0.trimmingCharacters(in: .whitespaces)) else { throw fail("bad shape") }
      return v
    }
    shape = dims
    let count = dims.reduce(1, *)
    let body = data.subdata(in: (headerStart + headerLength)..<data.count)
    func load<T>(_: T.Type) throws -> [T] {
      guard body.count == count * MemoryLayout<T>.size else {
        throw fail("\(body.count) data bytes for shape \(dims) of \(descr)")
      }
      return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
        body.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
        initialized = count
      }
    }
    switch descr {
    case "<f4":
      floats = try load(Float.self)
      int64s = nil
    case "<i8":
      let v = try load(Int64.self)
      int64s = v
      floats = v.map { Float($0) }
    case "<i4":
      let v = try load(Int32.self).map { Int64($0) }
      int64s = v
      floats = v.map { Float($0) }
    default:
      throw fail("dtype \(descr) is not supported")
    }
  }
}
