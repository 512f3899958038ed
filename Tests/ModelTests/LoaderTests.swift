import Dataset
import Foundation
import TestSupport
import Testing

@testable import Model

/// Generates the malformed models once per test process.
enum BadModels {
  static let directory: Result<URL, Error> = Result {
    let directory = try TestEnvironment.makeTemporaryDirectory("onnx-bad")
    try PythonReference.run(
      script: "scripts/reference/onnx_bad_models.py", arguments: [directory.path])
    return directory
  }

  static func url(_ name: String) throws -> URL {
    try directory.get().appendingPathComponent(name)
  }

  /// Loads (and prepares) `name`, returning the error it must raise.
  static func error(_ name: String) throws -> ModelError? {
    do {
      let graph = try ONNXLoader.load(contentsOf: try url(name))
      _ = try GraphPasses.prepare(graph)
      return nil
    } catch let error as ModelError {
      return error
    }
  }
}

@Suite(
  "ONNX loader errors",
  .requiresPython)
struct LoaderTests {
  @Test func validModelLoads() throws {
    let graph = try ONNXLoader.load(contentsOf: try BadModels.url("valid.onnx"))
    #expect(graph.nodes.map(\.op.name) == ["Conv"])
    #expect(graph.opsetVersion == 13)
    #expect(graph.declaredInputShapes == [[.fixed(1), .fixed(4), .fixed(8), .fixed(8)]])
  }

  @Test func truncatedFileIsRejected() throws {
    let error = try #require(try BadModels.error("truncated.onnx"))
    #expect(error.kind == .unreadableFile || error.kind == .missingValue)
    #expect(error.message.contains("truncated.onnx"))
  }

  @Test func textFileIsNotONNX() throws {
    let error = try #require(try BadModels.error("not_onnx.onnx"))
    #expect(error.kind == .unreadableFile)
    #expect(error.message.contains("not_onnx.onnx"))
  }

  @Test func missingFileIsReported() throws {
    let error = try #require(try BadModels.error("does_not_exist.onnx"))
    #expect(error.kind == .unreadableFile)
    #expect(error.message.contains("does_not_exist.onnx"))
  }

  @Test func missingInitializerNamesNodeAndInput() throws {
    let error = try #require(try BadModels.error("missing_initializer.onnx"))
    #expect(error.kind == .missingValue)
    #expect(error.message.contains("conv0"))
    #expect(error.message.contains("'w'"))
  }

  @Test func allUnsupportedOpsAreListedTogether() throws {
    let error = try #require(try BadModels.error("unsupported.onnx"))
    #expect(error.kind == .unsupportedOperators)
    #expect(error.message.contains("topk_node"))
    #expect(error.message.contains("TopK"))
    #expect(error.message.contains("fancy_node"))
    #expect(error.message.contains("MyFancyOp"))
    #expect(error.message.contains("com.example"))
    #expect(!error.message.contains("relu0"))
  }

  @Test func rawDataSizeMismatchIsRejected() throws {
    let error = try #require(try BadModels.error("raw_size_mismatch.onnx"))
    #expect(error.kind == .invalidTensor)
    #expect(error.message.contains("'w'"))
    #expect(error.message.contains("100 bytes"))
  }

  @Test func absurdDimensionsAreRejectedBeforeAllocating() throws {
    for name in ["huge_dims.onnx", "negative_dims.onnx"] {
      let error = try #require(try BadModels.error(name))
      #expect(error.kind == .invalidTensor, "\(name)")
      #expect(error.message.contains("'w'"), "\(name)")
    }
  }

  @Test func channelMismatchNamesTheNode() throws {
    let error = try #require(try BadModels.error("channel_mismatch.onnx"))
    #expect(error.kind == .invalidNode)
    #expect(error.message.contains("conv0"))
  }

  @Test func externalDataInsideTheDirectoryLoads() throws {
    let graph = try ONNXLoader.load(contentsOf: try BadModels.url("ext_ok/model.onnx"))
    let expected = try NumpyFile.read(try BadModels.url("weights.npy")).floatValues()
    let weights = try #require(graph.constants.values.first { $0.shape == [6, 4, 3, 3] })
    #expect(weights.floats == expected)
  }

  @Test(arguments: ["ext_absolute", "ext_dotdot", "ext_symlink"])
  func externalDataOutsideTheDirectoryIsRejected(_ name: String) throws {
    let error = try #require(try BadModels.error("\(name)/model.onnx"))
    #expect(error.kind == .unsafeExternalData)
    #expect(error.message.contains("'w'"))
  }

  @Test func externalDataIsRejectedForInMemoryModels() throws {
    let data = try Data(contentsOf: try BadModels.url("ext_ok/model.onnx"))
    #expect(throws: ModelError.self) { try ONNXLoader.load(data: data) }
  }
}
