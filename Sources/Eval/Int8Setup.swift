import Dataset
import Foundation
import Model

/// The int8 engine's settings and input path once the command-line options and a mapper
/// configuration (`--mapper-config`) are combined.
///
/// Precedence: the mapper configuration supplies every value it sets; a command-line option
/// left at its default defers to it; a command-line option set to a value the configuration
/// contradicts is an error naming both (a silently overridden setting would make the reported
/// number describe a different model than the one on the board).
struct Int8Setup {
  /// Method, percentile, scheme and node overrides.
  var settings: Int8Settings
  /// The preprocessing of the tensor the int8 engine reads, when it differs from the
  /// `--preset` tensor the other engines read (e.g. the NV12 round trip of
  /// `input_type_rt: nv12`); nil when the int8 engine reads the same tensor.
  var preprocess: PreprocessConfig?
  /// Mapper keys not modelled, unknown keys, and consistency notes, one line each.
  var warnings: [String] = []
  /// Nodes the configuration forces onto the quantised path (`ON: BPU`, `run_on_bpu`); a
  /// warning is added if the engine runs one of them in float.
  var forcedQuantized: [String] = []
  /// Recorded in the run manifest (the run's identity): config file and hash, input path.
  var manifestEntries: [String: String] = [:]

  /// What differs between `preprocess` and the `--preset` tensor, e.g.
  /// `chroma none -> nv12-full`; empty when the int8 engine reads the same tensor.
  var inputPathDifferences: [String] = []
}

extension Int8Setup {
  /// Combines `options` with its mapper configuration, if any, for `graph`, whose other
  /// engines read tensors made with `base`.
  ///
  /// Throws ``EvalError`` (`.input`) for a configuration that cannot be read, names nodes the
  /// model does not have, sets an input path this tool cannot reproduce, or contradicts a
  /// command-line option.
  static func resolve(
    _ options: CalibrationOptions, graph: Graph?, base: PreprocessConfig
  ) throws -> Int8Setup {
    let mapper: MapperConfig?
    if let path = options.mapperConfig {
      do {
        mapper = try MapperConfig(contentsOf: URL(fileURLWithPath: path))
      } catch let error as MapperConfigError {
        throw EvalError(.input, "--mapper-config: \(error.description)")
      }
    } else {
      mapper = nil
    }
    let source = options.mapperConfig ?? ""

    // Calibration method and percentile.
    var method = Int8Settings.Method(rawValue: options.calibMethod) ?? .default
    var percentile = options.calibPercentile
    if let mapper {
      let mapped: (Int8Settings.Method, Double)
      switch mapper.calibration {
      case .select(_, let p): mapped = (.default, p)
      case .method(let m, let p):
        mapped = (Int8Settings.Method(rawValue: m.rawValue) ?? .default, p)
      }
      if options.calibMethod != CalibrationOptions.defaultMethod && method != mapped.0 {
        throw EvalError(
          .input,
          "--calib-method \(options.calibMethod) contradicts \(source): "
            + "calibration_parameters.calibration_type \(mapper.calibrationType.rawValue)"
            + (mapper.maxPercentile.map { " (max_percentile \($0))" } ?? "")
            + " (which this engine runs as \(mapped.0.rawValue)); drop one of them")
      }
      if options.calibPercentile != CalibrationOptions.defaultPercentile,
        let fraction = mapper.maxPercentile, abs(fraction * 100 - options.calibPercentile) > 1e-9
      {
        throw EvalError(
          .input,
          "--calib-percentile \(options.calibPercentile) contradicts \(source): "
            + "calibration_parameters.max_percentile \(fraction); drop one of them")
      }
      method = mapped.0
      percentile = mapped.1
    }

    // Node overrides.
    var floatNodes = CalibrationOptions.nodeNames(options.floatNodes)
    var int16Nodes = CalibrationOptions.nodeNames(options.int16Nodes)
    if let both = floatNodes.intersection(int16Nodes).sorted().first {
      throw EvalError(.input, "node '\(both)' is given to both --float and --int16")
    }
    var setup = Int8Setup(settings: Int8Settings(method: method, percentile: percentile))
    if let mapper {
      setup.warnings += mapper.warnings.map { "\(source): \($0.description)" }
      setup.settings.scheme = mapper.quantizationScheme
      let nodeNames = Set(graph?.nodes.map(\.name) ?? [])
      let producers = graph?.producers() ?? []
      for node in mapper.nodeOverrides {
        let key = "node_info/run_on_cpu/run_on_bpu '\(node.name)'"
        if graph != nil && !nodeNames.contains(node.name) {
          throw EvalError(.input, "\(source): \(key): the model has no node of that name")
        }
        if node.runsInFloat && node.forcedQuantized {
          throw EvalError(.input, "\(source): \(key) is set to run both on CPU and on BPU")
        }
        if node.runsInFloat {
          if int16Nodes.contains(node.name) {
            throw EvalError(
              .input, "--int16 \(node.name) contradicts \(source): \(key) runs it on CPU (float)")
          }
          floatNodes.insert(node.name)
        }
        if node.forcedQuantized {
          if floatNodes.contains(node.name) {
            throw EvalError(
              .input, "--float \(node.name) contradicts \(source): \(key) forces it onto the BPU")
          }
          setup.forcedQuantized.append(node.name)
        }
        if node.outputType == .int16 {
          if floatNodes.contains(node.name) {
            throw EvalError(
              .input,
              "--float \(node.name) contradicts \(source): \(key) sets OutputType int16")
          }
          int16Nodes.insert(node.name)
        }
        if node.inputType == .int16, let graph,
          let index = graph.nodes.firstIndex(where: { $0.name == node.name })
        {
          // An int16 input is the int16 output of whatever produces it.
          for input in graph.nodes[index].inputs where graph.constants[input] == nil {
            if let producer = producers[input] {
              let name = graph.nodes[producer].name
              if !floatNodes.contains(name) { int16Nodes.insert(name) }
            } else {
              setup.warnings.append(
                "\(source): \(key): InputType int16 on the model input is not modelled "
                  + "(the input is quantised as the input path gives it)")
            }
          }
        }
      }
    }
    setup.settings.floatNodes = floatNodes
    setup.settings.int16Nodes = int16Nodes

    // The input path.
    var int8 = base
    if let color = options.int8Color {
      do {
        try int8.apply(key: "color", value: color.lowercased() == "nv12" ? "nv12-full" : color)
        try int8.validate()
      } catch let error as PreprocessConfigError {
        throw EvalError(.input, "--int8-color: \(error.message)")
      }
    }
    if let mapper {
      try applyInputParameters(mapper, source: source, to: &int8, base: base, options: options)
      if let sha = try? SHA256.hexDigest(ofFile: URL(fileURLWithPath: source)) {
        setup.manifestEntries["mapper_config"] = source
        setup.manifestEntries["mapper_config_sha256"] = sha
      }
      let normalised = mapper.runtimeColor != nil || !mapper.mean.isEmpty || !mapper.scale.isEmpty
      if normalised && (int8.mean != base.mean || int8.effectiveScale != base.effectiveScale) {
        setup.warnings.append(
          "\(source): the int8 engine normalises as the configuration says (mean \(int8.mean), "
            + "scale \(int8.effectiveScale)); the other engines read --preset's (mean "
            + "\(base.mean), scale \(base.effectiveScale))")
      }
    }
    if int8 != base {
      setup.preprocess = int8
      setup.inputPathDifferences = differences(base, int8)
      setup.manifestEntries["input_path"] = setup.inputPathDifferences.joined(separator: "; ")
    }
    return setup
  }

  /// Sets the colour path and normalisation of `config` from the configuration's
  /// `input_parameters`, checking the layout and input shape against `base`.
  private static func applyInputParameters(
    _ mapper: MapperConfig, source: String, to config: inout PreprocessConfig,
    base: PreprocessConfig, options: CalibrationOptions
  ) throws {
    if let shape = mapper.inputShape {
      let nhwc = mapper.trainLayout == .nhwc
      let (h, w) = nhwc ? (shape[1], shape[2]) : (shape[2], shape[3])
      guard h == w, h == base.cropSize else {
        throw EvalError(
          .input,
          "\(source): input_parameters.input_shape \(shape.map(String.init).joined(separator: "x")) "
            + "does not match the preprocessing output \(base.cropSize)x\(base.cropSize) "
            + "(set --crop)")
      }
    }
    if let layout = mapper.trainLayout {
      let wanted: PreprocessConfig.Layout = layout == .nhwc ? .nhwc : .nchw
      guard wanted == base.layout else {
        throw EvalError(
          .input,
          "\(source): input_parameters.input_layout_train \(layout.rawValue) contradicts "
            + "--tensor-layout/--preset \(base.layout.rawValue)")
      }
    }
    if let runtime = mapper.runtimeColor {
      let channels: PreprocessConfig.Channels
      switch mapper.trainColor ?? (runtime == .nv12 ? .rgb : runtime) {
      case .rgb: channels = .rgb
      case .bgr: channels = .bgr
      case .yuv444: channels = .yuv444
      case let other:
        throw EvalError(
          .input,
          "\(source): input_parameters.input_type_train \(other.rawValue) is not modelled "
            + "(rgb, bgr and yuv444 are)")
      }
      let chroma: PreprocessConfig.ChromaPath
      switch runtime {
      case .nv12: chroma = .nv12Full
      case .rgb, .bgr: chroma = .none
      case let other:
        throw EvalError(
          .input,
          "\(source): input_parameters.input_type_rt \(other.rawValue) is not modelled "
            + "(nv12, rgb and bgr are)")
      }
      if let color = options.int8Color {
        var requested = base
        try? requested.apply(
          key: "color", value: color.lowercased() == "nv12" ? "nv12-full" : color)
        if requested.chroma != chroma || requested.channels != channels {
          throw EvalError(
            .input,
            "--int8-color \(color) contradicts \(source): input_type_rt \(runtime.rawValue), "
              + "input_type_train \((mapper.trainColor ?? runtime).rawValue); drop one of them")
        }
      }
      config.chroma = chroma
      config.channels = channels
    }
    if mapper.runtimeColor != nil || !mapper.mean.isEmpty || !mapper.scale.isEmpty {
      // The parser keeps Float; its shortest decimal is the value written in the file
      // (123.675, not 123.67500305), so a mean equal to --preset's gives the same tensor.
      func decimal(_ value: Float) -> Double { Double("\(value)") ?? Double(value) }
      let mean = mapper.mean.isEmpty ? [0, 0, 0] : mapper.mean.map(decimal)
      let scale = mapper.scale.isEmpty ? [1, 1, 1] : mapper.scale.map(decimal)
      guard mean.count == 3, scale.count == 3 else {
        throw EvalError(
          .input,
          "\(source): input_parameters.mean_value/scale_value: 3 channels expected, got "
            + "\(mean.count) mean and \(scale.count) scale values")
      }
      config.mean = mean
      config.scale = scale
    }
    do {
      try config.validate()
    } catch let error as PreprocessConfigError {
      throw EvalError(.input, "\(source): the int8 input path is not usable: \(error.message)")
    }
  }

  /// `knob a -> b` for every setting that differs between two configurations.
  static func differences(_ a: PreprocessConfig, _ b: PreprocessConfig) -> [String] {
    var lines = [String]()
    func compare<T: Equatable>(_ name: String, _ x: T, _ y: T, _ text: (T) -> String) {
      if x != y { lines.append("\(name) \(text(x)) -> \(text(y))") }
    }
    func list(_ values: [Double]) -> String {
      values.map { String(format: "%g", $0) }.joined(separator: ",")
    }
    compare("geometry", a.geometryDescription, b.geometryDescription) { $0 }
    compare("chroma", a.chroma, b.chroma) { $0.rawValue }
    compare("channels", a.channels, b.channels) { $0.rawValue }
    compare("mean", a.mean, b.mean, list)
    compare("scale", a.effectiveScale, b.effectiveScale, list)
    compare("layout", a.layout, b.layout) { $0.rawValue }
    return lines
  }
}

extension PreprocessConfig {
  /// The geometry knobs in one string, to tell whether two configurations resample alike.
  fileprivate var geometryDescription: String {
    "\(geometry.rawValue) resize \(effectiveResizeSize) crop \(cropSize) "
      + "\(interpolation.rawValue) \(cropRounding.rawValue) fraction \(centralFraction) "
      + "pad \(letterboxPad)"
  }
}
