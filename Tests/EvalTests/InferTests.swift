import Dataset
import Foundation
import TestSupport
import Testing

@testable import Eval

/// `infer` against onnxruntime on the same random tensor: the check a user runs on their own
/// model, here on a real-weights EfficientNet-Lite0 and a generated FasterNet T0.
@Suite(
  .requiresPython)
struct InferTests {
  /// Runs `infer` on a random [batch, 3, 224, 224] tensor and onnxruntime on the same file;
  /// returns (ours, onnxruntime's) logits, both [batch, classes].
  func compare(model: URL, batch: Int, seed: UInt64) throws -> (
    ours: NumpyArray, reference: NumpyArray
  ) {
    let root = try TestEnvironment.makeTemporaryDirectory("infer-tests")
    defer { try? FileManager.default.removeItem(at: root) }
    let input = root.appendingPathComponent("x.npy")
    let output = root.appendingPathComponent("y.npy")
    let reference = root.appendingPathComponent("ref.npy")
    var generator = SplitMix64(seed: seed)
    // Roughly the range of normalised images.
    let values = (0..<(batch * 3 * 224 * 224)).map { _ in Float(generator.nextUnit() * 4 - 2) }
    try NumpyFile.write(NumpyArray(shape: [batch, 3, 224, 224], values: values), to: input)
    let status = ImagenetEval.exitStatus(arguments: [
      "infer", "--model", model.path, "--input", input.path, "--output", output.path,
    ])
    #expect(status == 0)
    _ = try PythonReference.run(
      code: """
        import sys
        import numpy as np
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
        x = np.load(sys.argv[2])
        y = session.run(None, {session.get_inputs()[0].name: x})[0]
        np.save(sys.argv[3], y.reshape(x.shape[0], -1).astype(np.float32))
        """, arguments: [model.path, input.path, reference.path])
    return (try NumpyFile.read(output), try NumpyFile.read(reference))
  }

  func check(_ ours: NumpyArray, _ reference: NumpyArray, batch: Int) throws {
    #expect(ours.shape == reference.shape)
    #expect(ours.shape.first == batch)
    let a = try ours.values(as: Float.self)
    let b = try reference.values(as: Float.self)
    try #require(a.count == b.count)
    let range = Double((b.max() ?? 0) - (b.min() ?? 0))
    #expect(range > 0)
    let maxDiff = zip(a, b).map { Double(abs($0 - $1)) }.max() ?? .infinity
    #expect(maxDiff <= 1e-4 * range, "max |diff| \(maxDiff), logit range \(range)")
    let classes = ours.shape[1]
    for image in 0..<batch {
      func top5(_ v: [Float]) -> [Int] {
        Array((0..<classes).sorted { v[image * classes + $0] > v[image * classes + $1] }.prefix(5))
      }
      #expect(top5(a) == top5(b), "image \(image)")
    }
  }

  @Test(.enabled(if: RunFixture.efficientNetLite0 != nil, RunFixture.efficientNetMissingMessage))
  func efficientNetLite0MatchesONNXRuntime() throws {
    let model = try #require(RunFixture.efficientNetLite0)
    let (ours, reference) = try compare(model: model, batch: 2, seed: 1)
    try check(ours, reference, batch: 2)
  }

  @Test func fasterNetT0MatchesONNXRuntime() throws {
    let cache = TestEnvironment.packageRoot.appendingPathComponent(".build/fasternet-cache")
    let printed = try PythonReference.run(
      script: "tools/make_fasternet.py",
      arguments: ["--variant", "t0", "--opset", "13", "--cache-dir", cache.path])
    let path = try #require(
      printed.split(whereSeparator: \.isNewline).last.map(String.init))
    let (ours, reference) = try compare(model: URL(fileURLWithPath: path), batch: 3, seed: 2)
    try check(ours, reference, batch: 3)
  }

  @Test func inputErrors() throws {
    let root = try TestEnvironment.makeTemporaryDirectory("infer-errors")
    defer { try? FileManager.default.removeItem(at: root) }
    let model = root.appendingPathComponent("tiny.onnx")
    try RunFixture.tinyModel(at: model)
    let wrongShape = root.appendingPathComponent("wrong.npy")
    try NumpyFile.write(
      NumpyArray(shape: [2, 3, 16, 16], values: [Float](repeating: 0, count: 2 * 3 * 256)),
      to: wrongShape)
    let doubles = root.appendingPathComponent("doubles.npy")
    try NumpyFile.write(
      NumpyArray(shape: [1, 3, 32, 32], values: [Double](repeating: 0, count: 3 * 1024)),
      to: doubles)
    let out = root.appendingPathComponent("y.npy").path
    func status(_ input: String, _ extra: [String] = []) -> Int32 {
      ImagenetEval.exitStatus(
        arguments: ["infer", "--model", model.path, "--input", input, "--output", out] + extra)
    }
    #expect(status(wrongShape.path) == 1)
    #expect(status(doubles.path) == 1)
    #expect(status(root.appendingPathComponent("missing.npy").path) == 1)
    #expect(status(wrongShape.path, ["--engine", "int8"]) == 1)
    #expect(!FileManager.default.fileExists(atPath: out))
  }
}
