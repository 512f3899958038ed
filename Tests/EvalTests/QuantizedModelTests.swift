import Dataset
import Foundation
import Model
import TestSupport
import Testing

@testable import Eval

/// `run`, `bench`, `infer` and `quantize` given a model onnxruntime's `quantize_static` already
/// quantized (QDQ and QOperator): the int8 engine runs it with its own parameters, matching
/// onnxruntime; calibration options and the float engine are refused; the reports describe the
/// imported quantization and say why there is no layer report.
@Suite(
  .serialized,
  .requiresPython)
struct QuantizedModelTests {
  /// A tiny float model, its quantized forms and 10 images (one not a JPEG).
  struct Setup {
    let workspace: RunFixture.Workspace
    let qdq: URL
    let qOperator: URL
    func path(_ name: String) -> String { workspace.path(name) }
  }

  /// Quantizes only the `formats` a test reads (each is an onnxruntime run).
  func makeSetup(_ formats: Set<String> = ["qdq", "qoperator"]) throws -> Setup {
    let workspace = try RunFixture.Workspace.make("quantized-model-tests", broken: [3])
    let qdq = workspace.root.appendingPathComponent("q-qdq.onnx")
    let qOperator = workspace.root.appendingPathComponent("q-qop.onnx")
    for (format, url) in [("qdq", qdq), ("qoperator", qOperator)] where formats.contains(format) {
      try RunFixture.quantizedTinyModel(from: workspace.model, at: url, format: format)
    }
    return Setup(workspace: workspace, qdq: qdq, qOperator: qOperator)
  }

  func run(_ setup: Setup, model: URL, out: String, _ extra: [String] = []) -> Int32 {
    ImagenetEval.exitStatus(
      arguments: [
        "run", "--model", model.path, "--data", setup.workspace.data.path, "--out", out,
        "--quiet", "--batch", "4",
      ] + RunFixture.tinyPreprocess + extra)
  }

  /// Runs `model` into `setup.path(name)`, expecting success, and reads its summary.
  func evaluate(
    _ setup: Setup, model: URL, name: String, _ extra: [String] = []
  ) throws -> Summary {
    let out = setup.path(name)
    try #require(run(setup, model: model, out: out, extra) == 0, "\(name)")
    return try Summary.read(from: URL(fileURLWithPath: out + "/summary.json"))
  }

  /// The error a command line throws when run (nil when it succeeds), e.g. `["run", …]`.
  func runError(_ arguments: [String]) -> String? {
    do {
      var command = try ImagenetEval.parseAsRoot(arguments)
      try command.run()
      return nil
    } catch {
      return "\(error)"
    }
  }

  @Test func runEvaluatesBothFormatsOnTheInt8EngineWithoutCalibration() throws {
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.workspace.root) }
    for (model, format) in [(setup.qdq, "QDQ"), (setup.qOperator, "QOperator")] {
      // No --engines: a quantized model defaults to int8.
      let out = setup.path("run-\(format)")
      let summary = try evaluate(setup, model: model, name: "run-\(format)")
      #expect(summary.provenance.run.engines == ["int8"])
      #expect(summary.metrics.images == 9)
      let quantization = try #require(summary.provenance.run.calibration)
      #expect(
        quantization["quantization"]
          == "imported quantized model (\(format), 3 integer nodes, no float fallback nodes)")
      #expect(quantization["format"] == format)
      #expect(quantization["quantized_nodes"] == "3")
      #expect(quantization["source"]?.contains("no calibration images") == true)
      #expect(quantization["requested_images"] == nil)
      let operators = try #require(quantization["model_operators"])
      #expect(operators.contains(format == "QDQ" ? "DequantizeLinear" : "QLinearConv 1"))
      #expect(summary.provenance.timings?.calibration == 0)
      #expect(summary.provenance.run.model.sha256 == (try SHA256.hexDigest(ofFile: model)))
      let markdown = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
      #expect(markdown.contains("The int8 engine ran an imported quantized model (\(format)"))
      #expect(markdown.contains("Per-layer report: not available: the model came quantized"))
      #expect(markdown.contains("- int8 quantization (imported): "))
      #expect(!markdown.contains("- calibration: "))
      let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
      #expect(html.contains("Per-layer SQNR: not available: the model came quantized"))
    }
  }

  @Test func theInt8EngineAgreesWithTheModelsOwnDefinition() throws {
    let setup = try makeSetup(["qdq"])
    defer { try? FileManager.default.removeItem(at: setup.workspace.root) }
    // reference evaluates the QDQ graph as ONNX defines it (float arithmetic on the
    // quantised grid): the integer kernels must give the same answers.
    let summary = try evaluate(
      setup, model: setup.qdq, name: "paired", ["--engines", "reference,int8"])
    let paired = try #require(summary.metrics.paired)
    #expect(paired.images == 9)
    #expect(paired.agreement == 100)
    #expect((paired.cosine ?? 0) > 0.9999, "cosine \(paired.cosine ?? .nan)")
    #expect(summary.provenance.run.calibration?["format"] == "QDQ")
  }

  @Test func int8ColorSplitsOffTheInputPath() throws {
    let setup = try makeSetup(["qoperator"])
    defer { try? FileManager.default.removeItem(at: setup.workspace.root) }
    // The imported model on its own NV12 input path against itself on the --preset tensor:
    // int8-rgb is the reference, so the drop is what the input path costs.
    let summary = try evaluate(
      setup, model: setup.qOperator, name: "nv12", ["--int8-color", "nv12"])
    #expect(summary.provenance.run.engines == ["int8-rgb", "int8"])
    let paired = try #require(summary.metrics.paired)
    #expect(paired.reference == "int8-rgb" && paired.candidate == "int8")
    #expect(summary.metrics.dropSplit == nil)
    #expect(summary.provenance.run.calibration?["input_path"] == "chroma none -> nv12-full")
    #expect(summary.provenance.run.calibration?["format"] == "QOperator")
    // The records pair each engine with its own tensor: the NV12 round trip changes some
    // logits, so the two engines cannot agree on every logit of every image.
    #expect((paired.cosine ?? 1) < 1)
  }

  @Test func calibrationOptionsAndTheFloatEngineAreRefused() throws {
    let setup = try makeSetup(["qdq"])
    defer { try? FileManager.default.removeItem(at: setup.workspace.root) }
    let base =
      [
        "--model", setup.qdq.path, "--data", setup.workspace.data.path, "--out",
        setup.path("refused"), "--quiet",
      ] + RunFixture.tinyPreprocess
    for (extra, option) in [
      (["--calib", setup.workspace.data.path], "--calib"),
      (["--calib-count", "8"], "--calib-count"),
      (["--calib-method", "max"], "--calib-method"), (["--float", "conv"], "--float"),
      (["--int16", "conv"], "--int16"),
      (["--save-quantized", setup.path("s.onnx")], "--save-quantized"),
    ] {
      let message = try #require(runError(["run"] + base + extra), "\(extra)")
      #expect(message.contains("is already quantized (QDQ)"), "\(message)")
      #expect(message.contains("\(option) would change nothing"), "\(message)")
    }
    #expect(ImagenetEval.exitStatus(arguments: ["run"] + base + ["--calib-count", "8"]) == 1)
    for engines in ["float", "float,int8"] {
      let message = try #require(runError(["run"] + base + ["--engines", engines]))
      #expect(message.contains("holds no float model"), "\(message)")
    }
    #expect(!FileManager.default.fileExists(atPath: setup.path("refused") + "/run.json"))
    #expect(!FileManager.default.fileExists(atPath: setup.path("s.onnx")))
    // quantize takes the float model.
    let quantize = try #require(
      runError(
        [
          "quantize", "--model", setup.qdq.path, "--data", setup.workspace.data.path,
          "--output",
          setup.path("qq.onnx"),
        ] + RunFixture.tinyPreprocess))
    #expect(quantize.contains("is already quantized (QDQ)"))
    #expect(!FileManager.default.fileExists(atPath: setup.path("qq.onnx")))
  }

  @Test func inferMatchesOnnxruntimeAndBenchRecordsTheImport() throws {
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.workspace.root) }
    let input = setup.workspace.root.appendingPathComponent("x.npy")
    var generator = SplitMix64(seed: 5)
    let values = (0..<(3 * 3 * 32 * 32)).map { _ in Float(generator.nextUnit() * 4 - 2) }
    try NumpyFile.write(NumpyArray(shape: [3, 3, 32, 32], values: values), to: input)
    for model in [setup.qdq, setup.qOperator] {
      let output = setup.workspace.root.appendingPathComponent("y.npy")
      let expected = setup.workspace.root.appendingPathComponent("ort.npy")
      #expect(
        ImagenetEval.exitStatus(arguments: [
          "infer", "--model", model.path, "--input", input.path, "--output", output.path,
        ]) == 0)
      // onnxruntime on the same tensor; one LSB is the scale of the model's last
      // DequantizeLinear (the logits are dequantised codes).
      let printed = try PythonReference.run(
        code: """
          import sys
          import numpy as np
          import onnx
          import onnxruntime as ort
          from onnx import numpy_helper
          model, x_path, y_path = sys.argv[1:4]
          session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
          x = np.load(x_path)
          np.save(y_path, session.run(None, {"input": x})[0].astype(np.float32))
          m = onnx.load(model)
          constants = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
          last = [n for n in m.graph.node if m.graph.output[0].name in n.output][0]
          assert last.op_type == "DequantizeLinear", last.op_type
          print(float(constants[last.input[1]]))
          """, arguments: [model.path, input.path, expected.path])
      let lsb = try #require(
        printed.split(whereSeparator: \.isNewline).last.flatMap { Float(String($0)) })
      let ours = try NumpyFile.read(output)
      let reference = try NumpyFile.read(expected)
      #expect(ours.shape == [3, 10] && reference.shape == [3, 10])
      let worst =
        zip(try ours.values(as: Float.self), try reference.values(as: Float.self))
        .map { abs($0 - $1) / lsb }.max() ?? .infinity
      #expect(worst <= 1.001, "\(model.lastPathComponent): worst \(worst) LSB")
    }
    // infer refuses calibration options and the float engine on a quantized model.
    let inferBase = [
      "--model", setup.qdq.path, "--input", input.path, "--output", setup.path("z.npy"),
    ]
    #expect(
      runError(["infer"] + inferBase + ["--calib-method", "kl"])?.contains(
        "--calib-method would change nothing") == true)
    #expect(
      runError(["infer"] + inferBase + ["--engine", "float"])?.contains(
        "holds no float model") == true)
    #expect(!FileManager.default.fileExists(atPath: setup.path("z.npy")))

    let json = setup.workspace.root.appendingPathComponent("bench.json")
    #expect(
      ImagenetEval.exitStatus(arguments: [
        "bench", "--model", setup.qOperator.path, "--batch", "1,2", "--seconds", "0.02",
        "--threads", "1", "--json", json.path,
      ]) == 0)
    let report = try BenchReport.read(from: json)
    #expect(report.results.map(\.engine) == ["int8", "int8"])
    #expect(report.modelPath == setup.qOperator.path)
    #expect(report.modelSHA256 == (try SHA256.hexDigest(ofFile: setup.qOperator)))
    #expect(report.int8?["format"] == "QOperator")
    #expect(report.int8?["quantization"]?.hasPrefix("imported quantized model (QOperator") == true)
    #expect(
      runError(
        [
          "bench", "--model", setup.qOperator.path, "--calib", setup.workspace.data.path,
          "--seconds", "0.02",
        ]
      )?.contains("--calib would change nothing") == true)
  }

  @Test func operatorScanReadsTheWireFormat() throws {
    let setup = try makeSetup()
    defer { try? FileManager.default.removeItem(at: setup.workspace.root) }
    // onnx's own reading of the files is the reference for the scan.
    let listed = try PythonReference.run(
      code: """
        import sys
        import onnx
        for path in sys.argv[1:]:
            m = onnx.load(path)
            print(" ".join(sorted(
                (n.domain + ":" if n.domain not in ("", "ai.onnx") else "") + n.op_type
                for n in m.graph.node)))
        """,
      arguments: [setup.workspace.model.path, setup.qdq.path, setup.qOperator.path])
    let expected = listed.split(whereSeparator: \.isNewline).suffix(3).map {
      $0.split(separator: " ").map(String.init)
    }
    for (url, ops) in zip([setup.workspace.model, setup.qdq, setup.qOperator], expected) {
      let counts = try ONNXOperatorScan.operatorCounts(Data(contentsOf: url), path: url.path)
      let flattened = counts.keys.sorted().flatMap { Array(repeating: $0, count: counts[$0]!) }
      #expect(flattened == ops.sorted(), "\(url.lastPathComponent)")
    }
    #expect(try ImportedQuantization(modelAt: setup.qdq.path).format == .qdq)
    #expect(try ImportedQuantization(modelAt: setup.qOperator.path).format == .qOperator)
    #expect(throws: EvalError.self) {
      try ONNXOperatorScan.operatorCounts(Data([0x3A, 0x10, 0x01]), path: "bad.onnx")
    }
  }
}
