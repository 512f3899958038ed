import Foundation
import Model
import TestSupport
import Testing

@testable import Eval

@Suite("Mapper YAML configuration")
struct MapperConfigTests {
  /// Modelled on the RDK model zoo's FasterNet T0 classification config.
  static let fasterNetT0 = """
    model_parameters:
      onnx_model: './fasternet_t0.onnx'
      march: "bayes-e"
      layer_out_dump: False
      working_dir: 'model_output'
      output_model_file_prefix: 'FasterNet_T0_224x224_nv12'
      node_info: {
        "/stages.0/blocks.0/spatial_mixing/partial_conv3/Conv": {'ON': 'BPU', 'InputType': 'int16', 'OutputType': 'int16'},
        "/stages.0/blocks.0/mlp/mlp.0/Conv": {'InputType': 'int16'}
      }
    input_parameters:
      input_name: ""
      input_type_rt: 'nv12'
      input_type_train: 'rgb'
      input_layout_train: 'NCHW'
      norm_type: 'data_mean_and_scale'
      mean_value: 123.675 116.28 103.53
      scale_value: 0.01712475 0.017507 0.01742919
      input_shape: 1x3x224x224
    calibration_parameters:
      cal_data_dir: './calibration_data_rgb_f32'
      cal_data_type: 'float32'
      calibration_type: 'default'
      run_on_cpu: "/head/Gemm"
    compiler_parameters:
      compile_mode: 'latency'
      debug: False
      optimize_level: 'O3'
    """

  @Test("the FasterNet T0 sample maps onto NV12, mean/scale, default calibration and int16 nodes")
  func fasterNetSample() throws {
    let config = try MapperConfig(yaml: Self.fasterNetT0, file: "fasternet_t0_config.yaml")
    #expect(config.onnxModel == "./fasternet_t0.onnx")
    #expect(config.outputModelFilePrefix == "FasterNet_T0_224x224_nv12")
    #expect(config.workingDirectory == "model_output")
    #expect(config.inputName == nil)
    #expect(config.runtimeColor == .nv12 && config.usesNV12)
    #expect(config.trainColor == .rgb)
    #expect(config.trainLayout == .nchw)
    #expect(config.inputShape == [1, 3, 224, 224])
    #expect(config.normType == .dataMeanAndScale)
    #expect(config.mean == [123.675, 116.28, 103.53])
    #expect(config.scale == [0.01712475, 0.017507, 0.01742919])
    #expect(config.calibrationDataDirectory == "./calibration_data_rgb_f32")
    #expect(config.calibrationType == .default)
    #expect(
      config.calibration == .select(methods: [.max, .percentile, .kl], percentile: 99.995))
    #expect(config.quantizationScheme == QuantizationScheme())
    #expect(
      config.nodeOverrides == [
        .init(
          name: "/head/Gemm", runsInFloat: true, forcedQuantized: false, inputType: nil,
          outputType: nil),
        .init(
          name: "/stages.0/blocks.0/mlp/mlp.0/Conv", runsInFloat: false, forcedQuantized: false,
          inputType: .int16, outputType: nil),
        .init(
          name: "/stages.0/blocks.0/spatial_mixing/partial_conv3/Conv", runsInFloat: false,
          forcedQuantized: true, inputType: .int16, outputType: .int16),
      ])
    // Every key that has no effect is reported, by name and line.
    let warned = config.warnings.map(\.key)
    #expect(
      warned == [
        "model_parameters.march", "model_parameters.layer_out_dump",
        "calibration_parameters.cal_data_type", "compiler_parameters.compile_mode",
        "compiler_parameters.debug", "compiler_parameters.optimize_level",
      ])
    let optimize = try #require(config.warnings.first { $0.key.hasSuffix("optimize_level") })
    #expect(optimize.line == 28)
    #expect(optimize.description.contains("compiler"))
    #expect(config.warnings.first?.line == 3)
  }

  @Test("calibration types, percentiles and unmodelled choices")
  func calibrationMapping() throws {
    func config(_ calibration: String) throws -> MapperConfig {
      try MapperConfig(yaml: "calibration_parameters:\n\(calibration)")
    }
    #expect(
      try config("  calibration_type: max").calibration == .method(.max, percentile: 99.995))
    #expect(
      try config("  calibration_type: max\n  max_percentile: 0.9999").calibration
        == .method(.percentile, percentile: 0.9999 * 100))
    #expect(try config("  calibration_type: kl").calibration == .method(.kl, percentile: 99.995))
    let defaulted = try config("  max_percentile: 0.99")
    #expect(defaulted.calibration == .select(methods: [.max, .percentile, .kl], percentile: 99))
    for unmodelled in ["mix", "skip", "load"] {
      let c = try config("  calibration_type: \(unmodelled)")
      #expect(c.calibration == .select(methods: [.max, .percentile, .kl], percentile: 99.995))
      #expect(
        c.warnings.count == 1 && c.warnings[0].key == "calibration_parameters.calibration_type")
      #expect(c.warnings[0].reason.contains(unmodelled))
    }
    let perChannel = try config("  per_channel: True\n  optimization: set_all_nodes_int16")
    #expect(perChannel.perChannel == true)
    #expect(
      perChannel.warnings.map(\.key) == [
        "calibration_parameters.per_channel", "calibration_parameters.optimization",
      ])
    #expect(try config("  per_channel: False").warnings.isEmpty)
  }

  @Test("normalisation variants broadcast or reject values")
  func normalisation() throws {
    let scaleOnly = try MapperConfig(
      yaml: """
        input_parameters:
          input_type_rt: bgr
          input_type_train: bgr
          input_layout_train: NHWC
          input_shape: 1x224x224x3
          norm_type: data_scale
          scale_value: 0.003921568
          mean_value: 128
        """)
    #expect(scaleOnly.scale == [Float](repeating: 0.003921568, count: 3))
    #expect(scaleOnly.mean.isEmpty)
    #expect(!scaleOnly.usesNV12)
    #expect(scaleOnly.warnings.map(\.key) == ["input_parameters.mean_value"])
    let listMean = try MapperConfig(
      yaml: "input_parameters:\n  norm_type: data_mean\n  mean_value: [104, 117, 123]")
    #expect(listMean.mean == [104, 117, 123])
    #expect(
      try MapperConfig(yaml: "input_parameters:\n  input_type_rt: rgb").normType == .noPreprocess)
  }

  @Test("unknown keys and sections are warnings naming them")
  func unknownKeys() throws {
    let config = try MapperConfig(
      yaml: """
        model_parameters:
          onnx_model: m.onnx
          onnx_modle: typo.onnx
          node_info:
            conv1: {ON: CPU, Precision: fp16}
        extra_section:
          a: 1
        custom_op:
          op_register_files: x.py
        """)
    #expect(
      config.warnings.map(\.key) == [
        "model_parameters.onnx_modle", "model_parameters.node_info.conv1.Precision",
        "extra_section", "custom_op",
      ])
    #expect(config.warnings[0].line == 3 && config.warnings[0].reason.contains("unknown"))
    #expect(config.nodeOverrides.first?.runsInFloat == true)
  }

  @Test(
    "wrong types are errors naming the key path and line",
    arguments: [
      (
        "calibration_parameters:\n  max_percentile: \"abc\"",
        "calibration_parameters.max_percentile", 2
      ),
      (
        "calibration_parameters:\n  max_percentile: 1.5", "calibration_parameters.max_percentile", 2
      ),
      ("calibration_parameters:\n  per_channel: maybe", "calibration_parameters.per_channel", 2),
      (
        "calibration_parameters:\n  calibration_type: entropy",
        "calibration_parameters.calibration_type", 2
      ),
      ("input_parameters:\n  input_type_rt: yuv420", "input_parameters.input_type_rt", 2),
      ("input_parameters:\n  input_layout_train: CHW", "input_parameters.input_layout_train", 2),
      ("input_parameters:\n  input_shape: 1x3x224", "input_parameters.input_shape", 2),
      (
        "input_parameters:\n  norm_type: data_mean\n  mean_value: 1 2 x",
        "input_parameters.mean_value", 3
      ),
      (
        "input_parameters:\n  input_shape: 1x3x8x8\n  norm_type: data_mean\n  mean_value: 1 2",
        "input_parameters.mean_value", 4
      ),
      ("input_parameters:\n  norm_type: data_scale", "input_parameters.scale_value", -1),
      ("input_parameters:\n  input_name: a;b", "input_parameters.input_name", 2),
      ("model_parameters:\n  node_info:\n    c1: {ON: GPU}", "model_parameters.node_info.c1.ON", 3),
      (
        "model_parameters:\n  node_info:\n    c1: {InputType: int4}",
        "model_parameters.node_info.c1.InputType", 3
      ),
      ("model_parameters:\n  onnx_model: [a, b]", "model_parameters.onnx_model", 2),
      ("model_parameters: [1, 2]", "model_parameters", 1),
    ])
  func wrongTypes(yaml: String, path: String, line: Int) throws {
    do {
      let config = try MapperConfig(yaml: yaml, file: "bad.yaml")
      Issue.record("accepted: \(config)")
    } catch let error as MapperConfigError {
      #expect(error.path == path)
      #expect(error.line == (line < 0 ? nil : line))
      #expect(error.description.hasPrefix("bad.yaml"))
      #expect(error.description.contains(path))
    }
  }

  @Test("malformed YAML and empty files are errors with a line")
  func malformed() throws {
    do {
      _ = try MapperConfig(yaml: "model_parameters:\n  onnx_model: 'unterminated\n", file: "x.yaml")
      Issue.record("malformed YAML accepted")
    } catch let error as MapperConfigError {
      #expect(error.line != nil && error.file == "x.yaml")
    }
    #expect(throws: MapperConfigError.self) { try MapperConfig(yaml: "") }
    #expect(throws: MapperConfigError.self) { try MapperConfig(yaml: "- a\n- b") }
  }

  @Test("a config file is read from disk; a missing one names the path")
  func readsFile() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("mapper")
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("fasternet_t0_config.yaml")
    try Self.fasterNetT0.write(to: url, atomically: true, encoding: .utf8)
    #expect(try MapperConfig(contentsOf: url).trainColor == .rgb)
    do {
      _ = try MapperConfig(contentsOf: directory.appendingPathComponent("missing.yaml"))
      Issue.record("missing file accepted")
    } catch let error as MapperConfigError {
      #expect(error.description.contains("missing.yaml"))
    }
  }
}
