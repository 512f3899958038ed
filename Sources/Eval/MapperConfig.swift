import Foundation
import Model
import Yams

/// A Horizon/RDK mapper configuration (`*_config.yaml`, the file `hb_mapper makertbin` reads),
/// reduced to the settings this engine models: the input colour path and normalisation, the
/// calibration method, and per-node int16 / float overrides.
///
/// Every key is accounted for: a key the engine models becomes a typed field; a known key it
/// cannot model (compiler options, `march`, `mix` calibration, …) and any unknown key become a
/// `MapperConfigWarning` naming it and saying why; a value of the wrong type throws a
/// `MapperConfigError` naming the key path and its line.
public struct MapperConfig: Equatable, Sendable {
  /// A colour format of `input_type_rt` / `input_type_train`.
  public enum ColorFormat: String, Sendable, CaseIterable {
    /// YUV 4:2:0 semi-planar (the camera path on RDK boards).
    case nv12
    /// RGB.
    case rgb
    /// BGR.
    case bgr
    /// YUV 4:4:4.
    case yuv444
    /// One luminance channel.
    case gray
    /// A non-image tensor fed as is.
    case featuremap
  }

  /// A tensor layout of `input_layout_rt` / `input_layout_train`.
  public enum Layout: String, Sendable, CaseIterable {
    /// Channels first.
    case nchw = "NCHW"
    /// Channels last.
    case nhwc = "NHWC"
  }

  /// `norm_type`: which of mean and scale the toolchain folds into the model input.
  public enum NormType: String, Sendable, CaseIterable {
    /// `(x - mean) * scale`.
    case dataMeanAndScale = "data_mean_and_scale"
    /// `x * scale`.
    case dataScale = "data_scale"
    /// `x - mean`.
    case dataMean = "data_mean"
    /// `x`.
    case noPreprocess = "no_preprocess"
  }

  /// `calibration_type` as written in the file.
  public enum CalibrationType: String, Sendable, CaseIterable {
    /// Try max, percentile and KL; keep the one whose output is most similar to float.
    case `default`
    /// Max (or, with `max_percentile` < 1, the percentile of the max).
    case max
    /// KL (entropy) calibration.
    case kl
    /// Per-node mixture of methods (not modelled).
    case mix
    /// Calibration on random data, for performance checks only (not modelled).
    case skip
    /// Scales taken from a pre-quantised (QAT) model (not modelled).
    case load
  }

  /// The calibration this engine will run for the configuration.
  public enum Calibration: Equatable, Sendable {
    /// Horizon `default`: the best of max, percentile and KL by output cosine similarity.
    case select(methods: [CalibrationMethod], percentile: Double)
    /// One method; `percentile` is used by `.percentile`.
    case method(CalibrationMethod, percentile: Double)
  }

  /// Where a node runs and at which precision, from `node_info`, `run_on_cpu`, `run_on_bpu`.
  public struct NodeOverride: Equatable, Sendable {
    /// The ONNX node name.
    public let name: String
    /// True when the node stays in float32 (`ON: CPU`, or listed in `run_on_cpu`).
    public var runsInFloat: Bool
    /// True when the node is forced onto the quantised path (`ON: BPU`, `run_on_bpu`).
    public var forcedQuantized: Bool
    /// `InputType`: `int16` means symmetric int16 activations into the node.
    public var inputType: QuantizedType?
    /// `OutputType`: `int16` means symmetric int16 output activations.
    public var outputType: QuantizedType?
  }

  /// `model_parameters.onnx_model`, as written (relative to the config file's directory).
  public var onnxModel: String?
  /// `model_parameters.output_model_file_prefix`.
  public var outputModelFilePrefix: String?
  /// `model_parameters.working_dir`.
  public var workingDirectory: String?
  /// `input_parameters.input_name`.
  public var inputName: String?
  /// `input_parameters.input_type_rt`: the colour format the board feeds.
  public var runtimeColor: ColorFormat?
  /// `input_parameters.input_layout_rt`.
  public var runtimeLayout: Layout?
  /// `input_parameters.input_type_train`: the colour format the model was trained on.
  public var trainColor: ColorFormat?
  /// `input_parameters.input_layout_train`.
  public var trainLayout: Layout?
  /// `input_parameters.input_shape`, e.g. `[1, 3, 224, 224]`.
  public var inputShape: [Int]?
  /// `input_parameters.norm_type` (`no_preprocess` when absent).
  public var normType: NormType = .noPreprocess
  /// The per-channel mean subtracted from 0…255 pixels (empty unless the norm type uses it).
  public var mean: [Float] = []
  /// The per-channel scale applied after the mean (empty unless the norm type uses it).
  public var scale: [Float] = []
  /// `calibration_parameters.cal_data_dir`.
  public var calibrationDataDirectory: String?
  /// `calibration_parameters.cal_data_type` (e.g. `float32`).
  public var calibrationDataType: String?
  /// `calibration_parameters.calibration_type` as written (`default` when absent).
  public var calibrationType: CalibrationType = .default
  /// `calibration_parameters.max_percentile` as a fraction (e.g. 0.99995), if given.
  public var maxPercentile: Double?
  /// `calibration_parameters.per_channel`, if given.
  public var perChannel: Bool?
  /// Per-node overrides, sorted by node name.
  public var nodeOverrides: [NodeOverride] = []
  /// Keys that were present but not modelled, and unknown keys, each with the reason.
  public var warnings: [MapperConfigWarning] = []

  /// True when images reach the model through the NV12 round trip (`input_type_rt: nv12`).
  public var usesNV12: Bool { runtimeColor == .nv12 }

  /// The calibration to run: `default` selects among max, percentile (at `max_percentile`,
  /// 99.995 % when absent) and KL; `max` with `max_percentile` below 1 is the percentile
  /// method; `kl` is KL. `mix`, `skip` and `load` are not modelled and fall back to
  /// `default` (the parser has recorded a warning for them).
  public var calibration: Calibration {
    let percentile = (maxPercentile ?? 0.99995) * 100
    switch calibrationType {
    case .max:
      if let maxPercentile, maxPercentile < 1 {
        return .method(.percentile, percentile: maxPercentile * 100)
      }
      return .method(.max, percentile: percentile)
    case .kl:
      return .method(.kl, percentile: percentile)
    case .default, .mix, .skip, .load:
      return .select(methods: [.max, .percentile, .kl], percentile: percentile)
    }
  }

  /// The quantisation scheme: the Horizon one (int8 symmetric activations per tensor, int8
  /// weights per output channel), which is what the BPU does whatever `per_channel` says.
  public var quantizationScheme: QuantizationScheme {
    QuantizationScheme(activations: .symmetricInt8, weights: .perChannel)
  }

  /// Reads and parses a configuration file.
  public init(contentsOf url: URL) throws {
    let text: String
    do {
      text = try String(contentsOf: url, encoding: .utf8)
    } catch {
      throw MapperConfigError(
        file: url.path, path: "", line: nil, message: "cannot read: \(error.localizedDescription)")
    }
    try self.init(yaml: text, file: url.path)
  }

  /// Parses configuration text; `file` names it in errors and warnings.
  public init(yaml: String, file: String = "<config>") throws {
    var parser = MapperConfigParser(file: file)
    self = try parser.parse(yaml)
  }

  init() {}
}

/// A key of a mapper configuration that was present but is not modelled, or is unknown.
public struct MapperConfigWarning: Equatable, Sendable, CustomStringConvertible {
  /// The key path, e.g. `compiler_parameters.optimize_level`.
  public let key: String
  /// The line in the file, when known.
  public let line: Int?
  /// Why the key has no effect here.
  public let reason: String

  /// `key (line n): reason`.
  public var description: String {
    "\(key)\(line.map { " (line \($0))" } ?? ""): \(reason)"
  }
}

/// A mapper configuration that cannot be used: bad YAML, or a value of the wrong type.
public struct MapperConfigError: Error, Equatable, CustomStringConvertible {
  /// The file.
  public let file: String
  /// The key path, e.g. `calibration_parameters.max_percentile` (empty for the document).
  public let path: String
  /// The line in the file, when known.
  public let line: Int?
  /// What is wrong.
  public let message: String

  /// `file:line: key.path: message`, the form compilers use.
  public var description: String {
    "\(file)\(line.map { ":\($0)" } ?? ""): \(path.isEmpty ? "" : "\(path): ")\(message)"
  }
}

/// Walks the YAML tree, filling a `MapperConfig` and accounting for every key.
struct MapperConfigParser {
  let file: String
  var config = MapperConfig()
  private var overrides: [String: MapperConfig.NodeOverride] = [:]
  // Raw mean/scale values; resolved once the channel count is known.
  private var meanNode: (Yams.Node, String)?
  private var scaleNode: (Yams.Node, String)?

  init(file: String) { self.file = file }

  // Keys of the toolchain that this engine does not model, with the reason.
  private static let unmodelled: [String: String] = [
    "model_parameters.march":
      "the BPU micro-architecture only matters to the compiler; the int8 scheme is the same",
    "model_parameters.layer_out_dump": "debug dumps of the toolchain are not produced",
    "model_parameters.log_level": "toolchain logging has no counterpart",
    "model_parameters.remove_node_type":
      "removing input/output nodes is a deployment step; the full graph is evaluated",
    "model_parameters.remove_node_name":
      "removing input/output nodes is a deployment step; the full graph is evaluated",
    "model_parameters.caffe_model": "only ONNX models are supported",
    "model_parameters.prototxt": "only ONNX models are supported",
    "model_parameters.debug_mode": "toolchain debugging has no counterpart",
    "input_parameters.input_batch": "the batch size is a command-line option",
    "input_parameters.input_space_and_range":
      "only the full-range (regular) NV12 conversion is modelled",
    "input_parameters.std_value": "not a Horizon normalisation key; use scale_value",
    "calibration_parameters.preprocess_on":
      "calibration images go through the same preprocessing as evaluation images",
    "calibration_parameters.optimization":
      "toolchain-specific calibration heuristics (set_all_nodes_int16, …) are not modelled",
    "calibration_parameters.quant_config": "custom quantisation configs are not modelled",
    "calibration_parameters.cal_data_type":
      "calibration images are decoded from the dataset, not read as .npy/.bin files",
  ]

  private static let modelled: Set<String> = [
    "model_parameters.onnx_model", "model_parameters.output_model_file_prefix",
    "model_parameters.working_dir", "model_parameters.node_info",
    "input_parameters.input_name", "input_parameters.input_type_rt",
    "input_parameters.input_layout_rt", "input_parameters.input_type_train",
    "input_parameters.input_layout_train", "input_parameters.input_shape",
    "input_parameters.norm_type", "input_parameters.mean_value", "input_parameters.scale_value",
    "calibration_parameters.cal_data_dir", "calibration_parameters.calibration_type",
    "calibration_parameters.max_percentile", "calibration_parameters.per_channel",
    "calibration_parameters.run_on_cpu", "calibration_parameters.run_on_bpu",
  ]

  mutating func parse(_ yaml: String) throws -> MapperConfig {
    let root: Yams.Node?
    do {
      root = try Yams.compose(yaml: yaml)
    } catch let error as YamlError {
      throw MapperConfigError(file: file, path: "", line: Self.line(of: error), message: "\(error)")
    }
    guard let root else {
      throw MapperConfigError(file: file, path: "", line: nil, message: "the file is empty")
    }
    guard let sections = root.mapping else {
      throw error(root, "", "expected a mapping of sections at the top level")
    }
    for (keyNode, value) in sections {
      let section = try key(keyNode, "")
      switch section {
      case "model_parameters", "input_parameters", "calibration_parameters":
        guard let entries = value.mapping else {
          throw error(value, section, "expected a mapping")
        }
        for (entryKey, entryValue) in entries {
          let path = "\(section).\(try key(entryKey, section))"
          try parseEntry(path, entryValue, keyNode: entryKey)
        }
      case "compiler_parameters":
        // Every compiler option is listed so the user sees exactly what was not modelled.
        if let entries = value.mapping {
          for (entryKey, _) in entries {
            warn(
              "compiler_parameters.\(try key(entryKey, section))", entryKey,
              "compiler options change BPU code generation, not the int8 arithmetic modelled here")
          }
        } else {
          warn(section, keyNode, "compiler options are not modelled")
        }
      case "custom_op":
        warn(section, keyNode, "custom operators are not supported")
      default:
        warn(section, keyNode, "unknown section; ignored")
      }
    }
    try resolveNormalisation()
    config.nodeOverrides = overrides.values.sorted { $0.name < $1.name }
    return config
  }

  private mutating func parseEntry(_ path: String, _ value: Yams.Node, keyNode: Yams.Node) throws {
    if let reason = Self.unmodelled[path] {
      if path == "input_parameters.input_space_and_range",
        try string(value, path).lowercased() == "regular"
      {
        return
      }
      if path == "calibration_parameters.cal_data_type" {
        config.calibrationDataType = try string(value, path)
      }
      warn(path, keyNode, reason)
      return
    }
    guard Self.modelled.contains(path) else {
      warn(path, keyNode, "unknown key; ignored")
      return
    }
    switch path {
    case "model_parameters.onnx_model": config.onnxModel = try string(value, path)
    case "model_parameters.output_model_file_prefix":
      config.outputModelFilePrefix = try string(value, path)
    case "model_parameters.working_dir": config.workingDirectory = try string(value, path)
    case "model_parameters.node_info": try parseNodeInfo(value, path)
    case "input_parameters.input_name":
      let names = try list(value, path)
      guard names.count <= 1 else {
        throw error(
          value, path, "\(names.count) inputs; only single-input classifiers are supported")
      }
      config.inputName = names.first
    case "input_parameters.input_type_rt": config.runtimeColor = try color(value, path)
    case "input_parameters.input_type_train": config.trainColor = try color(value, path)
    case "input_parameters.input_layout_rt": config.runtimeLayout = try layout(value, path)
    case "input_parameters.input_layout_train": config.trainLayout = try layout(value, path)
    case "input_parameters.input_shape":
      let text = try string(value, path)
      let dims = text.split(separator: "x").map { Int($0.trimmingCharacters(in: .whitespaces)) }
      guard dims.count == 4, let shape = dims as? [Int], shape.allSatisfy({ $0 > 0 }) else {
        throw error(value, path, "expected a shape like 1x3x224x224, got '\(text)'")
      }
      config.inputShape = shape
    case "input_parameters.norm_type":
      let text = try string(value, path)
      guard let normType = MapperConfig.NormType(rawValue: text) else {
        throw error(
          value, path,
          "expected one of \(MapperConfig.NormType.allCases.map(\.rawValue)), got '\(text)'")
      }
      config.normType = normType
    case "input_parameters.mean_value": meanNode = (value, path)
    case "input_parameters.scale_value": scaleNode = (value, path)
    case "calibration_parameters.cal_data_dir":
      config.calibrationDataDirectory = try string(value, path)
    case "calibration_parameters.calibration_type":
      let text = try string(value, path)
      guard let type = MapperConfig.CalibrationType(rawValue: text) else {
        throw error(
          value, path,
          "expected one of \(MapperConfig.CalibrationType.allCases.map(\.rawValue)), got '\(text)'")
      }
      config.calibrationType = type
      switch type {
      case .mix:
        warn(path, keyNode, "'mix' (per-node method search) is not modelled; using 'default'")
      case .skip:
        warn(
          path, keyNode,
          "'skip' calibrates on random data for performance checks; using 'default' on real images")
      case .load:
        warn(
          path, keyNode,
          "'load' takes scales from a pre-quantised model, not modelled; using 'default'")
      default: break
      }
    case "calibration_parameters.max_percentile":
      guard let fraction = value.scalar.flatMap({ Double($0.string) }), fraction > 0,
        fraction <= 1
      else {
        throw error(
          value, path, "expected a number in (0, 1] such as 0.99995, got \(describe(value))")
      }
      config.maxPercentile = fraction
    case "calibration_parameters.per_channel":
      guard value.scalar != nil, let flag = value.bool else {
        throw error(value, path, "expected True or False, got \(describe(value))")
      }
      config.perChannel = flag
      if flag {
        warn(
          path, keyNode,
          "per-channel feature-map calibration is not modelled; activations stay per tensor"
            + " (weights are per output channel regardless)")
      }
    case "calibration_parameters.run_on_cpu":
      for name in try list(value, path) { overrides[name, default: .init(name)].runsInFloat = true }
    case "calibration_parameters.run_on_bpu":
      for name in try list(value, path) {
        overrides[name, default: .init(name)].forcedQuantized = true
      }
    default:
      break
    }
  }

  private mutating func parseNodeInfo(_ value: Yams.Node, _ path: String) throws {
    guard let nodes = value.mapping else {
      throw error(value, path, "expected a mapping from node names to settings")
    }
    for (nameNode, settings) in nodes {
      let name = try key(nameNode, path)
      let nodePath = "\(path).\(name)"
      guard let entries = settings.mapping else {
        throw error(settings, nodePath, "expected a mapping like {ON: BPU, InputType: int16}")
      }
      var node = overrides[name] ?? .init(name)
      for (settingKey, settingValue) in entries {
        let setting = try key(settingKey, nodePath)
        let settingPath = "\(nodePath).\(setting)"
        switch setting {
        case "ON":
          switch try string(settingValue, settingPath).uppercased() {
          case "CPU": node.runsInFloat = true
          case "BPU": node.forcedQuantized = true
          default:
            throw error(
              settingValue, settingPath, "expected CPU or BPU, got \(describe(settingValue))")
          }
        case "InputType", "OutputType":
          let text = try string(settingValue, settingPath)
          let type: QuantizedType
          switch text.lowercased() {
          case "int16": type = .int16
          case "int8": type = .int8
          default:
            throw error(settingValue, settingPath, "expected int8 or int16, got '\(text)'")
          }
          if setting == "InputType" { node.inputType = type } else { node.outputType = type }
        default:
          warn(settingPath, settingKey, "unknown node setting; ignored")
        }
      }
      overrides[name] = node
    }
  }

  private mutating func resolveNormalisation() throws {
    let channels = config.inputShape.map { shape in
      config.trainLayout == .nhwc ? shape[3] : shape[1]
    }
    let needsMean = config.normType == .dataMean || config.normType == .dataMeanAndScale
    let needsScale = config.normType == .dataScale || config.normType == .dataMeanAndScale
    for (needed, raw, label) in [
      (needsMean, meanNode, "mean_value"), (needsScale, scaleNode, "scale_value"),
    ] {
      let path = "input_parameters.\(label)"
      guard needed else {
        if let (node, _) = raw {
          warn(path, node, "norm_type '\(config.normType.rawValue)' does not use it; ignored")
        }
        continue
      }
      guard let (node, _) = raw else {
        throw MapperConfigError(
          file: file, path: path, line: nil,
          message: "norm_type '\(config.normType.rawValue)' needs \(label)")
      }
      var values = try numbers(node, path)
      let count = channels ?? values.count
      if values.count == 1, count > 1 {
        values = [Float](repeating: values[0], count: count)
      }
      guard values.count == count else {
        throw error(node, path, "\(values.count) values for \(count) input channels")
      }
      if label == "mean_value" { config.mean = values } else { config.scale = values }
    }
  }

  // MARK: Scalars

  private func key(_ node: Yams.Node, _ parent: String) throws -> String {
    guard let text = node.scalar?.string else {
      throw error(node, parent, "expected a plain key")
    }
    return text
  }

  private func string(_ node: Yams.Node, _ path: String) throws -> String {
    guard let scalar = node.scalar else {
      throw error(node, path, "expected a single value, got \(describe(node))")
    }
    return scalar.string.trimmingCharacters(in: .whitespaces)
  }

  private func color(_ node: Yams.Node, _ path: String) throws -> MapperConfig.ColorFormat {
    let text = try string(node, path)
    guard let color = MapperConfig.ColorFormat(rawValue: text.lowercased()) else {
      throw error(
        node, path,
        "expected one of \(MapperConfig.ColorFormat.allCases.map(\.rawValue)), got '\(text)'")
    }
    return color
  }

  private func layout(_ node: Yams.Node, _ path: String) throws -> MapperConfig.Layout {
    let text = try string(node, path)
    guard let layout = MapperConfig.Layout(rawValue: text.uppercased()) else {
      throw error(node, path, "expected NCHW or NHWC, got '\(text)'")
    }
    return layout
  }

  // A ';'-separated string (the toolchain's convention) or a YAML sequence of names.
  private func list(_ node: Yams.Node, _ path: String) throws -> [String] {
    if let sequence = node.sequence {
      return try sequence.map { try string($0, path) }.filter { !$0.isEmpty }
    }
    return try string(node, path).split(separator: ";").map {
      $0.trimmingCharacters(in: .whitespaces)
    }.filter { !$0.isEmpty }
  }

  // "123.675 116.28 103.53", a single number, or a YAML sequence of numbers.
  private func numbers(_ node: Yams.Node, _ path: String) throws -> [Float] {
    let items: [String]
    if let sequence = node.sequence {
      items = try sequence.map { try string($0, path) }
    } else {
      items = try string(node, path).split(whereSeparator: { $0 == " " || $0 == "," || $0 == ";" })
        .map(String.init)
    }
    let values = items.map { Float($0) }
    guard !values.isEmpty, let numbers = values as? [Float], numbers.allSatisfy(\.isFinite) else {
      throw error(node, path, "expected space-separated numbers, got \(describe(node))")
    }
    return numbers
  }

  private func describe(_ node: Yams.Node) -> String {
    if let scalar = node.scalar { return "'\(scalar.string)'" }
    return node.sequence != nil ? "a list" : "a mapping"
  }

  private mutating func warn(_ key: String, _ node: Yams.Node, _ reason: String) {
    config.warnings.append(MapperConfigWarning(key: key, line: node.mark?.line, reason: reason))
  }

  private func error(_ node: Yams.Node, _ path: String, _ message: String) -> MapperConfigError {
    MapperConfigError(file: file, path: path, line: node.mark?.line, message: message)
  }

  private static func line(of error: YamlError) -> Int? {
    switch error {
    case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
      return mark.line
    default:
      return nil
    }
  }
}

extension MapperConfig.NodeOverride {
  init(_ name: String) {
    self.init(
      name: name, runsInFloat: false, forcedQuantized: false, inputType: nil, outputType: nil)
  }
}
