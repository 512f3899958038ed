import Dataset
import Foundation
import Model
import TestSupport
import Testing

@testable import Eval

/// `quantize` and `run --save-quantized` end to end on a tiny model and generated images: exit
/// statuses, the files written (and nothing else), the sidecar's provenance, and onnxruntime
/// running the written model.
@Suite(
  .requiresPython)
struct QuantizeCommandTests {
  typealias Setup = RunFixture.Workspace

  func makeSetup() throws -> Setup { try .make("quantize-tests", count: 12) }

  func quantize(_ setup: Setup, output: String, _ extra: [String] = []) -> Int32 {
    ImagenetEval.exitStatus(
      arguments: [
        "quantize", "--model", setup.model.path, "--data", setup.data.path, "--output", output,
        "--batch", "4", "--calib-count", "8", "--calib-method", "max",
      ] + RunFixture.tinyPreprocess + extra)
  }

  func sidecar(_ path: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path + ".json"))
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
  }

  /// Files in `directory` (hidden temporaries included).
  func listing(_ directory: URL) throws -> Set<String> {
    Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
  }

  @Test func writesTheModelAndItsProvenanceAndOnnxruntimeRunsIt() throws {
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let output = setup.path("q.onnx")
    #expect(quantize(setup, output: output) == 0)
    #expect(try listing(setup.root) == ["tiny.onnx", "data.tar", "q.onnx", "q.onnx.json"])

    let provenance = try sidecar(output)
    #expect(
      provenance["source_model_sha256"] as? String == (try SHA256.hexDigest(ofFile: setup.model)))
    #expect(
      provenance["quantized_model_sha256"] as? String
        == (try SHA256.hexDigest(ofFile: URL(fileURLWithPath: output))))
    #expect(provenance["tool_version"] as? String == ToolInfo.version)
    #expect(provenance["format"] as? String == "QDQ")
    let calibration = try #require(provenance["calibration"] as? [String: String])
    #expect(calibration["method"] == "max")
    #expect(calibration["images"] == "8")
    #expect(calibration["source"]?.contains("first 8 images of --data") == true)
    #expect((provenance["quantized_nodes"] as? [String])?.count == 3)
    #expect((provenance["float_fallback_nodes"] as? [String]) == [])
    let preprocessing = try #require(provenance["preprocessing"] as? [String: String])
    #expect(preprocessing.values.contains("32"))

    // onnx.checker and onnxruntime accept it; the logits track the float model's.
    let input = setup.root.appendingPathComponent("x.npy")
    var values = [Float](repeating: 0, count: 5 * 3 * 32 * 32)
    for i in values.indices { values[i] = Float((i * 7919) % 255) / 127.5 - 1 }
    try NumpyFile.write(NumpyArray(shape: [5, 3, 32, 32], values: values), to: input)
    let logits = setup.root.appendingPathComponent("y.npy")
    let report = try PythonReference.run(
      script: "scripts/reference/qdq_onnxruntime.py",
      arguments: [output, input.path, logits.path, "--batch", "2"])
    #expect(report.contains("\"QuantizeLinear\""))
    let quantized = try NumpyFile.read(logits).values(as: Float.self)
    let float = try FloatEngine(
      graph: try ONNXLoader.load(contentsOf: setup.model), batchSize: 5)
    var expected = [Float](repeating: 0, count: 50)
    try values.withUnsafeBufferPointer { x in
      try expected.withUnsafeMutableBufferPointer { try float.run(input: x, output: $0) }
    }
    var dot = 0.0
    var norms = (0.0, 0.0)
    for (a, b) in zip(expected, quantized) {
      dot += Double(a) * Double(b)
      norms.0 += Double(a) * Double(a)
      norms.1 += Double(b) * Double(b)
    }
    let cosine = dot / (norms.0 * norms.1).squareRoot()
    #expect(quantized.count == expected.count && cosine > 0.99, "cosine \(cosine)")

    // Again over the existing files: replaced in place, still nothing else in the directory.
    let before = try Data(contentsOf: URL(fileURLWithPath: output))
    try Data("old".utf8).write(to: URL(fileURLWithPath: output))
    #expect(quantize(setup, output: output, ["--calib", setup.data.path]) == 0)
    #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == before)
    #expect(try listing(setup.root).count == 6)
    #expect(
      (try sidecar(output)["calibration"] as? [String: String])?["source"] == setup.data.path)
  }

  @Test func unusableOutputIsAClearErrorAndNothingIsWritten() throws {
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let missing = setup.path("no/such/dir/q.onnx")
    #expect(quantize(setup, output: missing) == EvalExitStatus.inputError.rawValue)
    #expect {
      try QuantizedModelFile(path: missing, option: "--output")
    } throws: {
      "\($0)".contains("--output") && "\($0)".contains(setup.path("no/such/dir"))
        && "\($0)".contains("does not exist")
    }
    // An existing directory where the file should go.
    let directory = setup.path("taken.onnx")
    try FileManager.default.createDirectory(
      atPath: directory, withIntermediateDirectories: false)
    #expect(quantize(setup, output: directory) == EvalExitStatus.inputError.rawValue)
    #expect {
      try QuantizedModelFile(path: directory, option: "--output")
    } throws: { "\($0)".contains("is a directory") }
    #expect(try listing(setup.root) == ["tiny.onnx", "data.tar", "taken.onnx"])
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    // A model whose input the preprocessing does not produce: refused before calibrating.
    #expect(
      quantize(setup, output: setup.path("q.onnx"), ["--crop", "24", "--resize", "24"])
        == EvalExitStatus.inputError.rawValue)
    #expect(try listing(setup.root) == ["tiny.onnx", "data.tar", "taken.onnx"])
    // Missing model.
    #expect(
      ImagenetEval.exitStatus(arguments: [
        "quantize", "--model", setup.path("none.onnx"), "--data", setup.data.path, "--output",
        setup.path("q.onnx"),
      ]) == EvalExitStatus.inputError.rawValue)
  }

  @Test func calibAloneIsEnough() throws {
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let output = setup.path("q.onnx")
    let arguments =
      [
        "quantize", "--model", setup.model.path, "--output", output, "--batch", "4",
        "--calib-count", "8", "--calib-method", "max",
      ] + RunFixture.tinyPreprocess
    #expect(ImagenetEval.exitStatus(arguments: arguments + ["--calib", setup.data.path]) == 0)
    let calibration = try #require(try sidecar(output)["calibration"] as? [String: String])
    #expect(calibration["source"] == setup.data.path)
    #expect(calibration["images"] == "8")
    #expect((try sidecar(output)["preprocessing"] as? [String: String])?["chroma"] == "none")
    // The int8 engine's own colour path is applied to the calibration images and recorded
    // (it used to be ignored by quantize).
    #expect(
      ImagenetEval.exitStatus(
        arguments: arguments + ["--calib", setup.data.path, "--int8-color", "nv12"]) == 0)
    let nv12 = try sidecar(output)
    #expect((nv12["preprocessing"] as? [String: String])?["chroma"] == "nv12-full")
    #expect(
      (nv12["calibration"] as? [String: String])?["input_path"] == "chroma none -> nv12-full")
    // Neither --data nor --calib: a usage error.
    do {
      _ = try ImagenetEval.parseAsRoot(arguments)
      Issue.record("quantize without images was accepted")
    } catch {
      #expect(ImagenetEval.fullMessage(for: error).contains("--data is required"))
    }
  }

  @Test func runSaveQuantized() throws {
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.root) }
    let saved = setup.path("run-q.onnx")
    func run(_ out: String, _ extra: [String]) -> Int32 {
      ImagenetEval.exitStatus(
        arguments: [
          "run", "--model", setup.model.path, "--data", setup.data.path, "--out",
          setup.path(out), "--quiet", "--batch", "4", "--calib-count", "8",
          "--calib-method", "max", "--save-quantized", saved,
        ] + RunFixture.tinyPreprocess + extra)
    }
    // Only the int8 engine has a quantised model to save.
    #expect(run("float", ["--engines", "float"]) == EvalExitStatus.inputError.rawValue)
    #expect(!FileManager.default.fileExists(atPath: saved))
    #expect(run("int8", ["--engines", "float,int8"]) == 0)
    var provenance = try sidecar(saved)
    #expect((provenance["calibration"] as? [String: String])?["method"] == "max")
    #expect(
      provenance["quantized_model_sha256"] as? String
        == (try SHA256.hexDigest(ofFile: URL(fileURLWithPath: saved))))
    var preprocessing = try #require(provenance["preprocessing"] as? [String: String])
    #expect(preprocessing["preset"] == "torchvision")
    #expect(preprocessing["chroma"] == "none")

    // With its own NV12 input path the int8 engine calibrated on NV12 round-tripped images:
    // the sidecar records that path, not the --preset tensor the float engine read.
    #expect(run("nv12", ["--engines", "float,int8", "--int8-color", "nv12"]) == 0)
    provenance = try sidecar(saved)
    preprocessing = try #require(provenance["preprocessing"] as? [String: String])
    #expect(preprocessing["chroma"] == "nv12-full")
    #expect(preprocessing["preset"] == "torchvision")
    #expect(preprocessing["cropSize"] == "32")
    let calibration = try #require(provenance["calibration"] as? [String: String])
    #expect(calibration["input_path"]?.contains("chroma none -> nv12-full") == true)
    let summary = try Summary.read(
      from: URL(fileURLWithPath: setup.path("nv12") + "/summary.json"))
    #expect(summary.provenance.run.preprocessing["chroma"] == "none")
  }
}
