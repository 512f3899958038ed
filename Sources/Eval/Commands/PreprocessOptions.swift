import ArgumentParser
import Dataset
import Foundation

/// The preprocessing and decoder options: a preset and the knobs that override it.
///
/// One group serves every command that turns JPEGs into tensors: `run`, `inspect` and
/// `quantize` through ``DatasetOptions``, and `bench`/`infer` directly for their `--calib`
/// images, so the int8 engine calibrates on tensors made exactly as `run` makes them.
public struct PreprocessOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Preprocessing recipe; the options below override single knobs of it. "
        + "torchvision: PIL bilinear shorter side 256, centre crop 224, ImageNet mean/std, NCHW. "
        + "timm: PIL bicubic, resize floor(224/0.875), crop 224. "
        + "rdk: OpenCV linear 256/224 through NV12 (BT.601 full range), Horizon mean/scale. "
        + "rdk-board: letterbox 224 (pad 127) through NV12. "
        + "tflite: central crop 0.875, OpenCV linear to 224, [-1, 1], NHWC. "
        + "efficientnet-lite: torchvision geometry, (x - 127) / 128.",
      valueName: PreprocessPreset.allCases.map(\.rawValue).joined(separator: "|")))
  var preset: String = PreprocessPreset.torchvision.rawValue

  @Option(
    help: ArgumentHelp(
      "How the image becomes the output square: "
        + PreprocessConfig.Geometry.allCases.map(\.rawValue).joined(separator: ", ") + ".",
      valueName: "name"))
  var geometry: String?

  @Option(help: ArgumentHelp("Shorter side after resizing (clears --crop-pct).", valueName: "n"))
  var resize: String?

  @Option(help: ArgumentHelp("Side of the square output.", valueName: "n"))
  var crop: String?

  @Option(
    help: ArgumentHelp(
      "timm crop_pct: resize the shorter side to floor(crop / crop-pct); 'none' clears it.",
      valueName: "fraction"))
  var cropPct: String?

  @Option(
    help: ArgumentHelp(
      "Fraction of each side kept by the central-fraction geometry.", valueName: "fraction"))
  var centralFraction: String?

  @Option(help: ArgumentHelp("Grey level (0-255) of the letterbox border.", valueName: "level"))
  var letterboxPad: String?

  @Option(
    help: ArgumentHelp(
      "Resampling arithmetic: "
        + PreprocessConfig.Interpolation.allCases.map(\.rawValue).joined(separator: ", ") + ".",
      valueName: "name"))
  var interpolation: String?

  @Option(
    help: ArgumentHelp(
      "Rounding of the centre-crop offset: half-even (torchvision) or floor (OpenCV scripts).",
      valueName: "half-even|floor"))
  var cropRounding: String?

  @Option(
    name: [.customLong("color"), .customLong("chroma")],
    help: ArgumentHelp(
      "Output colour: rgb, bgr, or an NV12 round trip as on the board: "
        + "nv12-full|nv12-video[->rgb|bgr|yuv444] (default back-conversion rgb).",
      valueName: "spec"))
  var color: String?

  @Option(
    help: ArgumentHelp("Per-channel mean on the 0-255 scale, subtracted first.", valueName: "R,G,B")
  )
  var mean: String?

  @Option(
    help: ArgumentHelp(
      "Per-channel std on the 0-255 scale: (x - mean) / std. Not with --scale.",
      valueName: "R,G,B"))
  var std: String?

  @Option(
    help: ArgumentHelp(
      "Per-channel multiplier instead of std: (x - mean) * scale (Horizon configs). Not with --std.",
      valueName: "R,G,B"))
  var scale: String?

  @Option(help: ArgumentHelp("Tensor layout of one image.", valueName: "nchw|nhwc"))
  var tensorLayout: String?

  @Flag(
    name: .customLong("fast-dct"),
    help: "Fast integer IDCT instead of libjpeg's accurate one. Changes pixels (off by default).")
  var fastDCT = false

  @Flag(
    name: .customLong("fast-decode"),
    help: ArgumentHelp(
      "Decode JPEGs at a reduced DCT scale (1/2, 1/4, 1/8) that still leaves every resize a "
        + "downscale. Faster, but changes pixels, so accuracy can move; off by default. "
        + "The measured accuracy effect is in the README."))
  var fastDecode = false

  /// Options with every default; the argument parser fills in the values.
  public init() {}

  /// Rejects contradictory or unusable values as usage errors, before any file is opened.
  public func validate() throws {
    if std != nil && scale != nil {
      throw ValidationError("give --std or --scale, not both (scale is 1 / std)")
    }
    do {
      _ = try preprocessConfig()
    } catch let error as PreprocessConfigError {
      throw ValidationError(error.message)
    }
  }

  /// The preprocessing configuration: the preset with the overrides applied, validated.
  public func preprocessConfig() throws -> PreprocessConfig {
    var overrides: [String: String] = [:]
    let values: [(String, String?)] = [
      ("geometry", geometry), ("resize", resize), ("crop", crop), ("crop-pct", cropPct),
      ("central-fraction", centralFraction), ("letterbox-pad", letterboxPad),
      ("interpolation", interpolation), ("crop-rounding", cropRounding), ("color", color),
      ("mean", mean), ("std", std), ("scale", scale), ("layout", tensorLayout),
    ]
    for case (let key, let value?) in values { overrides[key] = value }
    var config = try PreprocessConfig(preset: preset, overrides: overrides)
    // `resize` clears `crop-pct`; an explicit --crop-pct next to it must win regardless of the
    // order the overrides are applied in.
    if let cropPct, resize != nil {
      try config.apply(key: "crop-pct", value: cropPct)
      try config.validate()
    }
    return config
  }

  /// The JPEG decoder settings.
  public var decoderOptions: JPEGDecoder.Options {
    JPEGDecoder.Options(fastDCT: fastDCT, fastDecode: fastDecode)
  }
}

extension PreprocessConfig {
  /// Every setting flattened to strings (lists comma-joined, unset values `none`), as run
  /// manifests and quantized-model sidecars record them.
  var flattenedSettings: [String: String] {
    var result: [String: String] = [:]
    guard let data = try? JSONEncoder.canonical.encode(self),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return result }
    for (key, value) in object {
      if let array = value as? [Any] {
        result[key] = array.map { "\($0)" }.joined(separator: ",")
      } else if value is NSNull {
        result[key] = "none"
      } else {
        result[key] = "\(value)"
      }
    }
    return result
  }
}
