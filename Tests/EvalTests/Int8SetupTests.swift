import ArgumentParser
import Dataset
import Foundation
import Model
import TestSupport
import Testing

@testable import Eval

/// `--mapper-config`, `--int8-color`, `--float` and `--int16` combined into the int8 engine's
/// settings and input path (`Int8Setup`), and their conflicts.
@Suite(
  "int8 setup from options and mapper YAML",
  .requiresPython)
struct Int8SetupTests {
  /// conv1 (+relu1) → conv2 → GlobalAveragePool → Flatten → fc, with named nodes, 32×32 input.
  static func namedModel(at url: URL) throws {
    let code = """
      import sys
      import numpy as np
      import onnx
      from onnx import TensorProto, helper, numpy_helper
      rng = np.random.default_rng(0)
      t = lambda name, *shape: numpy_helper.from_array(
          rng.normal(0, 0.3, shape).astype(np.float32), name)
      nodes = [
          helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
          helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
          helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
          helper.make_node("GlobalAveragePool", ["c2"], ["g"], name="pool"),
          helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
          helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1),
      ]
      graph = helper.make_graph(
          nodes, "named",
          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
          [t("w1", 8, 3, 3, 3), t("b1", 8), t("w2", 8, 8, 3, 3), t("b2", 8), t("fw", 10, 8),
           t("fb", 10)])
      model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
      onnx.checker.check_model(model)
      onnx.save(model, sys.argv[1])
      """
    _ = try PythonReference.run(code: code, arguments: [url.path])
  }

  static let yaml = """
    model_parameters:
      onnx_model: './named.onnx'
      march: "bayes-e"
      node_info: {
        "conv1": {'OutputType': 'int16'},
        "conv2": {'InputType': 'int16'},
        "fc": {'ON': 'CPU'}
      }
    input_parameters:
      input_type_rt: 'nv12'
      input_type_train: 'rgb'
      input_layout_train: 'NCHW'
      norm_type: 'data_mean_and_scale'
      mean_value: 123.675 116.28 103.53
      scale_value: 0.01712475 0.017507 0.01742919
      input_shape: 1x3x32x32
    calibration_parameters:
      calibration_type: 'max'
      max_percentile: 0.9999
    compiler_parameters:
      optimize_level: 'O3'
    """

  struct Context {
    let root: URL
    let graph: Graph
    let base: PreprocessConfig
    func config(_ text: String) throws -> String {
      let url = root.appendingPathComponent("config-\(UUID().uuidString).yaml")
      try text.write(to: url, atomically: true, encoding: .utf8)
      return url.path
    }
    func resolve(_ arguments: [String]) throws -> Int8Setup {
      try CalibrationOptions.parse(arguments).resolve(graph: graph, base: base)
    }
  }

  func context() throws -> Context {
    let root = try TestEnvironment.makeTemporaryDirectory("int8-setup")
    let model = root.appendingPathComponent("named.onnx")
    try Self.namedModel(at: model)
    return Context(
      root: root, graph: try ONNXLoader.load(contentsOf: model),
      base: PreprocessConfig(resizeSize: 36, cropSize: 32))
  }

  func message(_ body: () throws -> Void) -> String {
    do {
      try body()
      return "no error"
    } catch let error as EvalError {
      return error.message
    } catch {
      return "\(error)"
    }
  }

  @Test("every modelled key of the mapper YAML reaches the settings and the input path")
  func mapsTheConfiguration() throws {
    let c = try context()
    defer { try? FileManager.default.removeItem(at: c.root) }
    let path = try c.config(Self.yaml)
    let setup = try c.resolve(["--mapper-config", path])
    // max with max_percentile < 1 is the percentile method at that percentile.
    #expect(setup.settings.method == .percentile)
    #expect(abs(setup.settings.percentile - 99.99) < 1e-9)
    #expect(setup.settings.floatNodes == ["fc"])
    // OutputType int16 on conv1; InputType int16 on conv2 is the output of its producer relu1.
    #expect(setup.settings.int16Nodes == ["conv1", "relu1"])
    let int8 = try #require(setup.preprocess)
    #expect(int8.chroma == .nv12Full && int8.channels == .rgb)
    #expect(int8.mean == [123.675, 116.28, 103.53])
    #expect(int8.scale == [0.01712475, 0.017507, 0.01742919])
    #expect(setup.inputPathDifferences.contains("chroma none -> nv12-full"))
    #expect(setup.manifestEntries["mapper_config"] == path)
    #expect(setup.manifestEntries["mapper_config_sha256"]?.count == 64)
    // Keys the engine cannot model are warnings naming the key, never dropped.
    #expect(setup.warnings.contains { $0.contains("model_parameters.march") })
    #expect(setup.warnings.contains { $0.contains("compiler_parameters.optimize_level") })
    // Mean/scale equal to the preset's (torchvision's 1/std up to float rounding) still differ
    // from it in the last digits, which the warning states rather than hiding.
    #expect(setup.warnings.contains { $0.contains("normalises as the configuration says") })
  }

  @Test("command-line options at their defaults defer; contradicting ones are errors naming both")
  func conflicts() throws {
    let c = try context()
    defer { try? FileManager.default.removeItem(at: c.root) }
    let path = try c.config(Self.yaml)
    // Agreeing explicit values are fine.
    #expect(
      try c.resolve(["--mapper-config", path, "--calib-method", "percentile"]).settings.method
        == .percentile)
    #expect(try c.resolve(["--mapper-config", path, "--int8-color", "nv12"]).preprocess != nil)
    let method = message { _ = try c.resolve(["--mapper-config", path, "--calib-method", "kl"]) }
    #expect(method.contains("--calib-method kl") && method.contains("calibration_type max"))
    let percentile = message {
      _ = try c.resolve(["--mapper-config", path, "--calib-percentile", "99.9"])
    }
    #expect(percentile.contains("--calib-percentile 99.9") && percentile.contains("max_percentile"))
    let color = message { _ = try c.resolve(["--mapper-config", path, "--int8-color", "rgb"]) }
    #expect(color.contains("--int8-color rgb") && color.contains("input_type_rt nv12"))
    let float = message { _ = try c.resolve(["--mapper-config", path, "--float", "conv1"]) }
    #expect(float.contains("--float conv1") && float.contains("int16"))
    let int16 = message { _ = try c.resolve(["--mapper-config", path, "--int16", "fc"]) }
    #expect(int16.contains("--int16 fc") && int16.contains("CPU"))
    let both = message { _ = try c.resolve(["--float", "conv2", "--int16", "conv2"]) }
    #expect(both.contains("conv2") && both.contains("--float") && both.contains("--int16"))
  }

  @Test("a configuration the model or preprocessing contradicts is an error naming the key")
  func badConfigurations() throws {
    let c = try context()
    defer { try? FileManager.default.removeItem(at: c.root) }
    let unknownNode = try c.config(
      Self.yaml.replacingOccurrences(of: "\"fc\": {'ON': 'CPU'}", with: "\"fc9\": {'ON': 'CPU'}"))
    let node = message { _ = try c.resolve(["--mapper-config", unknownNode]) }
    #expect(node.contains("fc9") && node.contains("no node"))
    let shape = try c.config(
      Self.yaml.replacingOccurrences(of: "1x3x32x32", with: "1x3x224x224"))
    let shapeMessage = message { _ = try c.resolve(["--mapper-config", shape]) }
    #expect(shapeMessage.contains("input_shape 1x3x224x224") && shapeMessage.contains("32x32"))
    let gray = try c.config(
      Self.yaml.replacingOccurrences(
        of: "input_type_train: 'rgb'", with: "input_type_train: 'gray'"))
    #expect(
      message { _ = try c.resolve(["--mapper-config", gray]) }.contains("input_type_train gray"))
    let missing = message { _ = try c.resolve(["--mapper-config", c.root.path + "/nope.yaml"]) }
    #expect(missing.contains("nope.yaml"))
  }

  @Test("--int8-color alone gives the int8 engine an NV12 copy of the preset's input path")
  func colourOnly() throws {
    let c = try context()
    defer { try? FileManager.default.removeItem(at: c.root) }
    #expect(try c.resolve([]).preprocess == nil)
    let setup = try c.resolve(["--int8-color", "nv12", "--float", "fc", "--int16", "conv1,conv2"])
    var expected = c.base
    expected.chroma = .nv12Full
    #expect(setup.preprocess == expected)
    #expect(setup.inputPathDifferences == ["chroma none -> nv12-full"])
    #expect(setup.settings.floatNodes == ["fc"])
    #expect(setup.settings.int16Nodes == ["conv1", "conv2"])
    #expect(setup.warnings.isEmpty)
    // --float-nodes is still accepted, comma-separated or repeated.
    let old = try CalibrationOptions.parse(["--float-nodes", "fc,conv1", "--float", "conv2"])
    #expect(old.settings().floatNodes == ["fc", "conv1", "conv2"])
  }
}
