import Foundation
import Model
import TestSupport
import Testing

@testable import Eval

/// Shared fixtures of the run/infer/bench tests: a tiny ONNX classifier written by the
/// reference venv's `onnx`, and labelled WebDataset shards of generated JPEGs.
enum RunFixture {
  /// A 32×32 classifier: Conv 3→8 (3×3, pad 1) + Relu, GlobalAveragePool, Flatten, Gemm 8→10.
  /// `biasClass` gets a bias of 100, so it is every image's top-1 (a model that is always
  /// right on labels equal to it).
  static func tinyModel(at url: URL, seed: Int = 0, biasClass: Int? = nil) throws {
    let code = """
      import sys
      import numpy as np
      import onnx
      from onnx import TensorProto, helper, numpy_helper
      out, seed, bias_class = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
      rng = np.random.default_rng(seed)
      w = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
      b = rng.normal(0, 0.1, 8).astype(np.float32)
      fw = rng.normal(0, 0.5, (10, 8)).astype(np.float32)
      fb = rng.normal(0, 0.1, 10).astype(np.float32)
      if bias_class >= 0:
          fb[bias_class] = 100.0
      nodes = [
          helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
          helper.make_node("Relu", ["c"], ["r"]),
          helper.make_node("GlobalAveragePool", ["r"], ["g"]),
          helper.make_node("Flatten", ["g"], ["f"]),
          helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
      ]
      graph = helper.make_graph(
          nodes, "tiny",
          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
           numpy_helper.from_array(fw, "fw"), numpy_helper.from_array(fb, "fb")])
      model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
      onnx.checker.check_model(model)
      onnx.save(model, out)
      """
    _ = try PythonReference.run(
      code: code, arguments: [url.path, String(seed), String(biasClass ?? -1)])
  }

  /// `float` (a ``tinyModel(at:seed:biasClass:)``) quantized by onnxruntime's
  /// `quantize_static`: int8 weights per channel; `qdq` with int8 activations, `qoperator`
  /// (QLinearConv, QGemm, …) with uint8 activations; calibrated on 8 fixed random inputs.
  static func quantizedTinyModel(from float: URL, at url: URL, format: String) throws {
    let code = """
      import logging
      import sys
      import numpy as np
      from onnxruntime.quantization import (
          CalibrationDataReader, QuantFormat, QuantType, quantize_static)
      logging.getLogger().setLevel(logging.ERROR)
      src, dst, fmt = sys.argv[1:4]
      rng = np.random.default_rng(3)
      class Reader(CalibrationDataReader):
          def __init__(self):
              self.batches = [rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)
                              for _ in range(8)]
          def get_next(self):
              return {"input": self.batches.pop()} if self.batches else None
      quantize_static(
          src, dst, Reader(),
          quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
          activation_type=QuantType.QInt8 if fmt == "qdq" else QuantType.QUInt8,
          weight_type=QuantType.QInt8, per_channel=True)
      """
    _ = try PythonReference.run(code: code, arguments: [float.path, url.path, format])
  }

  /// A WebDataset tar of `count` generated JPEGs (varied sizes) with `.cls` labels from
  /// `label(i)`; `broken` indices hold bytes that are not a JPEG.
  static func webDataset(
    at url: URL, count: Int, broken: Set<Int> = [], label: (Int) -> Int = { $0 % 10 }
  ) throws {
    var members = [(name: String, bytes: [UInt8])]()
    for i in 0..<count {
      let key = String(format: "sample%04d", i)
      let bytes =
        broken.contains(i)
        ? Array("this is not a JPEG".utf8)
        : Fixtures.jpeg(width: 40 + (i % 5) * 7, height: 36 + (i % 3) * 9, seed: UInt32(i + 1))
      members.append((name: key + ".jpg", bytes: bytes))
      members.append((name: key + ".cls", bytes: Array(String(label(i)).utf8)))
    }
    try Fixtures.writeTar(at: url, members: members)
  }

  /// A temporary directory holding a tiny model and a WebDataset shard, for one test.
  struct Workspace {
    let root: URL
    let model: URL
    let data: URL

    /// A path inside the directory.
    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// `count` images (the `broken` ones not JPEGs) labelled `biasClass` when given, else
    /// `i % 10`, and a tiny model whose top-1 is always `biasClass` when given.
    static func make(
      _ name: String, count: Int = 10, broken: Set<Int> = [], biasClass: Int? = nil
    ) throws -> Workspace {
      let root = try TestEnvironment.makeTemporaryDirectory(name)
      let model = root.appendingPathComponent("tiny.onnx")
      try RunFixture.tinyModel(at: model, biasClass: biasClass)
      let data = root.appendingPathComponent("data.tar")
      try RunFixture.webDataset(
        at: data, count: count, broken: broken, label: { biasClass ?? ($0 % 10) })
      return Workspace(root: root, model: model, data: data)
    }
  }

  /// Preprocessing options that turn the fixture images into the tiny model's input.
  static let tinyPreprocess = ["--preset", "torchvision", "--resize", "36", "--crop", "32"]

  /// The built `imagenet-eval` executable next to the test bundle (same configuration).
  static var executable: URL? {
    var candidates = [URL]()
    if let bundle = Bundle.allBundles.first(where: { $0.bundlePath.hasSuffix(".xctest") }) {
      candidates.append(bundle.bundleURL.deletingLastPathComponent())
    }
    if let main = Bundle.main.executableURL {
      candidates.append(main.deletingLastPathComponent())
    }
    #if DEBUG
      candidates.append(TestEnvironment.packageRoot.appendingPathComponent(".build/debug"))
    #else
      candidates.append(TestEnvironment.packageRoot.appendingPathComponent(".build/release"))
    #endif
    for directory in candidates {
      let url = directory.appendingPathComponent("imagenet-eval")
      if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return nil
  }

  /// The EfficientNet-Lite0 made by `scripts/setup-assets.sh`, when present.
  static var efficientNetLite0: URL? {
    let url = TestEnvironment.packageRoot.appendingPathComponent("models/efficientnet-lite0.onnx")
    return FileManager.default.fileExists(atPath: url.path) ? url : nil
  }

  static let efficientNetMissingMessage: Comment =
    "models/efficientnet-lite0.onnx is missing: run scripts/setup-assets.sh"

  static let subset = "datasets/ilsvrc2012-val-subset-1300.tar"
}

/// An engine that runs another and then demotes each image's top-1 class below every other
/// logit: always a different answer, for testing the `--max-drop` gate end to end.
final class DemotingEngine: InferenceEngine {
  let name: String
  let wrapped: any InferenceEngine
  var inputShape: [Int] { wrapped.inputShape }
  var classCount: Int { wrapped.classCount }
  var versionInfo: [String: String] { ["engine": "demoting test engine"] }

  init(name: String, wrapping wrapped: any InferenceEngine) {
    self.name = name
    self.wrapped = wrapped
  }

  func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>) throws {
    try wrapped.run(input: input, output: output)
    for image in 0..<batchSize {
      let range = image * classCount..<(image + 1) * classCount
      let logits = output[range]
      guard let top = logits.indices.max(by: { logits[$0] < logits[$1] }),
        let low = logits.min()
      else { continue }
      output[top] = low - 1
    }
  }
}
