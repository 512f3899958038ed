import Foundation
import TestSupport
import Testing

@testable import Dataset

@Suite("NumpyFile reads and writes what numpy does")
struct NumpyFileTests {
  @Test("header is padded to 64 bytes and parses back")
  func roundTripInMemory() throws {
    let array = try NumpyArray(
      shape: [2, 3], values: [Float](arrayLiteral: 1, -2, 3.5, 0, 1e-7, 65504))
    let bytes = NumpyFile.encode(array)
    #expect(Array(bytes[0..<8]) == [0x93, 78, 85, 77, 80, 89, 1, 0])
    let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
    #expect((10 + headerLength) % 64 == 0)
    #expect(bytes[10 + headerLength - 1] == 0x0A)
    let back = try NumpyFile.decode(bytes)
    #expect(back == array)
    #expect(try back.values(as: Float.self) == [1, -2, 3.5, 0, 1e-7, 65504])
    let empty = try NumpyFile.decode(
      NumpyFile.encode(try NumpyArray(shape: [0, 3], values: [Float]())))
    #expect(empty.shape == [0, 3])
    #expect(try empty.values(as: Float.self).isEmpty)
    #expect(throws: NumpyFileError.self) { try back.values(as: Double.self) }
  }

  @Test("truncated data, bad magic and unknown versions are clear errors")
  func malformed() throws {
    let array = try NumpyArray(shape: [4], values: [Int32](arrayLiteral: 1, 2, 3, 4))
    let bytes = NumpyFile.encode(array)
    let truncated = #expect(throws: NumpyFileError.self) {
      try NumpyFile.decode(Array(bytes.dropLast(3)), name: "cut.npy")
    }
    #expect(truncated?.description.contains("cut.npy") == true)
    #expect(truncated?.reason.contains("truncated data") == true)
    #expect(throws: NumpyFileError.self) { try NumpyFile.decode(Array(bytes.prefix(20))) }
    #expect(throws: NumpyFileError.self) { try NumpyFile.decode(Array("hello world".utf8)) }
    var future = bytes
    future[6] = 9
    let version = #expect(throws: NumpyFileError.self) { try NumpyFile.decode(future) }
    #expect(version?.reason.contains("version 9") == true)
    #expect(throws: NumpyFileError.self) {
      try NumpyArray(dtype: .float32, shape: [3], bytes: [0, 0])
    }
  }

  @Test(
    "numpy loads what Swift writes",
    .requiresPython)
  func numpyReadsSwift() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("npy-write")
    defer { try? FileManager.default.removeItem(at: directory) }
    let arrays: [(String, NumpyArray)] = [
      ("f4", try NumpyArray(shape: [2, 2], values: [Float](arrayLiteral: 0.5, -1.25, 3e38, -0.0))),
      ("f8", try NumpyArray(shape: [3], values: [Double](arrayLiteral: .pi, -1e-300, 42))),
      (
        "u1",
        try NumpyArray(shape: [1, 2, 3], values: [UInt8](arrayLiteral: 0, 1, 127, 128, 254, 255))
      ),
      ("i4", try NumpyArray(shape: [2], values: [Int32](arrayLiteral: .min, .max))),
      ("i8", try NumpyArray(shape: [], values: [Int64](arrayLiteral: -9_007_199_254_740_993))),
      ("empty", try NumpyArray(shape: [0, 3], values: [Float]())),
    ]
    var paths: [String] = []
    for (name, array) in arrays {
      let url = directory.appendingPathComponent("\(name).npy")
      try NumpyFile.write(array, to: url)
      paths.append(url.path)
    }
    let output = try PythonReference.run(
      code: """
        import sys, numpy as np
        for p in sys.argv[1:]:
            a = np.load(p)
            print(a.dtype.str, a.shape, a.flags['C_CONTIGUOUS'], repr(a.ravel().tolist()))
        """, arguments: paths)
    let lines = output.split(separator: "\n").map(String.init)
    #expect(
      lines == [
        "<f4 (2, 2) True [0.5, -1.25, 3.0000000054977558e+38, -0.0]",
        "<f8 (3,) True [3.141592653589793, -1e-300, 42.0]",
        "|u1 (1, 2, 3) True [0, 1, 127, 128, 254, 255]",
        "<i4 (2,) True [-2147483648, 2147483647]",
        "<i8 () True [-9007199254740993]",
        "<f4 (0, 3) True []",
      ])
  }

  @Test(
    "Swift reads what numpy writes (v1, v2, v3) and rejects what it cannot represent",
    .requiresPython)
  func swiftReadsNumpy() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("npy-read")
    defer { try? FileManager.default.removeItem(at: directory) }
    try PythonReference.run(
      code: """
        import sys, os, numpy as np
        from numpy.lib import format as f
        d = sys.argv[1]
        np.save(os.path.join(d, 'f4.npy'), (np.arange(24, dtype=np.float32) / 8 - 1).reshape(2, 3, 4))
        np.save(os.path.join(d, 'f8.npy'), np.array([np.pi, -2.5], dtype=np.float64))
        np.save(os.path.join(d, 'u1.npy'), np.arange(250, 256, dtype=np.uint8).reshape(3, 2))
        np.save(os.path.join(d, 'i4.npy'), np.array([-7, 2**31 - 1], dtype=np.int32))
        np.save(os.path.join(d, 'i8.npy'), np.array(2**40 + 1, dtype=np.int64))
        for v in (2, 3):
            with open(os.path.join(d, f'v{v}.npy'), 'wb') as fh:
                f.write_array(fh, np.array([[1, 2], [3, 4]], dtype='<i8'), version=(v, 0))
        np.save(os.path.join(d, 'fortran.npy'), np.asfortranarray(np.ones((2, 3), np.float32)))
        np.save(os.path.join(d, 'big.npy'), np.ones(3, dtype='>f4'))
        np.save(os.path.join(d, 'half.npy'), np.ones(3, dtype=np.float16))
        np.save(os.path.join(d, 'bool.npy'), np.ones(3, dtype=bool))
        """, arguments: [directory.path])
    func load(_ name: String) throws -> NumpyArray {
      try NumpyFile.read(directory.appendingPathComponent("\(name).npy"))
    }
    let f4 = try load("f4")
    #expect(f4.shape == [2, 3, 4])
    #expect(try f4.values(as: Float.self) == (0..<24).map { Float($0) / 8 - 1 })
    #expect(try load("f8").values(as: Double.self) == [Double.pi, -2.5])
    let u1 = try load("u1")
    #expect(u1.shape == [3, 2])
    #expect(try u1.values(as: UInt8.self) == [250, 251, 252, 253, 254, 255])
    #expect(try load("i4").values(as: Int32.self) == [-7, .max])
    let scalar = try load("i8")
    #expect(scalar.shape == [])
    #expect(try scalar.values(as: Int64.self) == [1 << 40 + 1])
    for version in ["v2", "v3"] {
      let array = try load(version)
      #expect(array.shape == [2, 2])
      #expect(try array.values(as: Int64.self) == [1, 2, 3, 4])
      #expect(array.floatValues() == [1, 2, 3, 4])
    }
    let expectations: [(String, String)] = [
      ("fortran", "Fortran-order"), ("big", "big-endian"), ("half", "unsupported dtype '<f2'"),
      ("bool", "unsupported dtype '|b1'"),
    ]
    for (name, message) in expectations {
      let error = #expect(throws: NumpyFileError.self) { try load(name) }
      #expect(error?.reason.contains(message) == true, "\(name): \(String(describing: error))")
      #expect(error?.file.hasSuffix("\(name).npy") == true)
    }
  }
}
