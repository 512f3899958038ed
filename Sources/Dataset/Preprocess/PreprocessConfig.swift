import Foundation

/// Every knob of the preprocessing, recorded verbatim in reports so a number can be traced back
/// to exactly how its pixels were made.
///
/// Start from a named preset (`PreprocessConfig.preset(named:)`) and override single knobs; call
/// `validate()` (the initialisers that parse strings do) before building a `Preprocessor`.
public struct PreprocessConfig: Codable, Equatable, Sendable {
  /// How the decoded image is mapped onto the `cropSize` × `cropSize` output square.
  public enum Geometry: String, Codable, Sendable, CaseIterable {
    /// Resize the shorter side to `resizeSize` (the long side is `Int(resizeSize * long / short)`,
    /// truncated, as torchvision's `Resize(int)`), then take the centred `cropSize` square.
    case resizeCrop = "resize-crop"
    /// Cut the central `centralFraction` of each side out of the decoded image (TensorFlow's
    /// `tf.image.central_crop`: offset `Int((side - side * fraction) / 2)`, size
    /// `side - 2 * offset`), then stretch it to `cropSize` × `cropSize`.
    case centralFraction = "central-fraction"
    /// Keep the aspect ratio and fit the whole image into `cropSize` × `cropSize`, then pad with
    /// `letterboxPad`; see `Preprocessor` for where the image sits.
    case letterbox
  }

  /// The resampling arithmetic, named after the library it reproduces.
  public enum Interpolation: String, Codable, Sendable, CaseIterable {
    /// Pillow `Image.resize(…, BILINEAR)`: triangle filter widened when downscaling
    /// (antialias), 22-bit fixed point, horizontal pass then vertical, uint8 between passes.
    case pillowBilinear = "pillow-bilinear"
    /// Pillow `Image.resize(…, BICUBIC)` (a = -0.5), same machinery as `pillowBilinear`.
    case pillowBicubic = "pillow-bicubic"
    /// OpenCV `cv2.resize(…, INTER_LINEAR)` on uint8: half-pixel centres, no antialias, 11-bit
    /// coefficients, an exact 2× downscale becomes `INTER_AREA` as in OpenCV.
    case cvLinear = "cv-linear"
    /// OpenCV `cv2.resize(…, INTER_AREA)` on uint8: pixel-area averaging when downscaling,
    /// OpenCV's area-style linear interpolation when upscaling.
    case cvArea = "cv-area"
    /// Pillow's `NEAREST`: source index `floor((i + 0.5) * in / out)` (the same as OpenCV's
    /// `INTER_NEAREST_EXACT`, not OpenCV's `INTER_NEAREST`).
    case nearest
  }

  /// How the centred crop offset `(resized - crop) / 2` is rounded when it is not whole.
  public enum CropRounding: String, Codable, Sendable, CaseIterable {
    /// torchvision `center_crop`: `int(round((h - ch) / 2.0))`, Python's half-to-even.
    case halfToEven = "half-even"
    /// Integer division `(h - ch) // 2`, as most OpenCV/numpy scripts (and Horizon's
    /// `CenterCropTransformer`) write it.
    case floor
  }

  /// Whether the image goes through NV12 before reaching the model, as it does on the board.
  public enum ChromaPath: String, Codable, Sendable, CaseIterable {
    /// No chroma subsampling: the decoded RGB reaches the model.
    case none
    /// BT.601 full range (JFIF matrix), what the Horizon toolchain assumes by default.
    case nv12Full = "nv12-full"
    /// BT.601 video range (Y 16–235, UV 16–240), OpenCV's `COLOR_BGR2YUV_I420` arithmetic.
    case nv12Video = "nv12-video"
  }

  /// The channel order (or colour space) of the output tensor.
  public enum Channels: String, Codable, Sendable, CaseIterable {
    /// Red, green, blue planes (torchvision, timm, most ONNX exports).
    case rgb
    /// Blue, green, red planes (Caffe- and OpenCV-trained models).
    case bgr
    /// Y, U, V planes at full resolution (chroma replicated over each 2×2 block); needs an NV12
    /// chroma path.
    case yuv444
  }

  /// The tensor layout of one image.
  public enum Layout: String, Codable, Sendable, CaseIterable {
    /// Channel planes (PyTorch/ONNX default).
    case nchw
    /// Interleaved channels (TensorFlow/TFLite).
    case nhwc
  }

  /// See `Geometry`.
  public var geometry: Geometry
  /// Shorter side after resizing (`resizeCrop`); ignored when `cropPct` is set.
  public var resizeSize: Int
  /// Side of the square output.
  public var cropSize: Int
  /// timm's `crop_pct`: when set, the shorter side is resized to `floor(cropSize / cropPct)`.
  public var cropPct: Double?
  /// Fraction of each side kept by `centralFraction` geometry.
  public var centralFraction: Double
  /// Grey level (0–255, every channel) that fills the letterbox border.
  public var letterboxPad: Int
  /// See `Interpolation`.
  public var interpolation: Interpolation
  /// See `CropRounding`.
  public var cropRounding: CropRounding
  /// See `ChromaPath`.
  public var chroma: ChromaPath
  /// See `Channels`.
  public var channels: Channels
  /// Per-channel mean on the 0–255 scale, subtracted first.
  public var mean: [Double]
  /// Per-channel standard deviation on the 0–255 scale; the output is `(x - mean) / std`.
  /// Ignored when `scale` is set.
  public var std: [Double]
  /// Per-channel multiplier used instead of `std` (`(x - mean) * scale`), as Horizon configs
  /// write it.
  public var scale: [Double]?
  /// See `Layout`.
  public var layout: Layout

  /// Creates a configuration; the defaults are the torchvision ImageNet recipe.
  public init(
    geometry: Geometry = .resizeCrop, resizeSize: Int = 256, cropSize: Int = 224,
    cropPct: Double? = nil, centralFraction: Double = 0.875, letterboxPad: Int = 127,
    interpolation: Interpolation = .pillowBilinear, cropRounding: CropRounding = .halfToEven,
    chroma: ChromaPath = .none, channels: Channels = .rgb,
    mean: [Double] = PreprocessConfig.imagenetMean, std: [Double] = PreprocessConfig.imagenetStd,
    scale: [Double]? = nil, layout: Layout = .nchw
  ) {
    self.geometry = geometry
    self.resizeSize = resizeSize
    self.cropSize = cropSize
    self.cropPct = cropPct
    self.centralFraction = centralFraction
    self.letterboxPad = letterboxPad
    self.interpolation = interpolation
    self.cropRounding = cropRounding
    self.chroma = chroma
    self.channels = channels
    self.mean = mean
    self.std = std
    self.scale = scale
    self.layout = layout
  }

  /// torchvision's ImageNet mean `(0.485, 0.456, 0.406)` times 255.
  public static let imagenetMean: [Double] = [123.675, 116.28, 103.53]
  /// torchvision's ImageNet std `(0.229, 0.224, 0.225)` times 255.
  public static let imagenetStd: [Double] = [58.395, 57.12, 57.375]

  /// The shorter side the image is resized to before cropping (`resizeCrop` geometry).
  public var effectiveResizeSize: Int {
    if let cropPct { return Int((Double(cropSize) / cropPct).rounded(.down)) }
    return resizeSize
  }

  /// The per-channel multiplier applied after subtracting the mean.
  public var effectiveScale: [Double] { scale ?? std.map { 1 / $0 } }

  /// Floats per image.
  public var outputElementCount: Int { 3 * cropSize * cropSize }

  /// Checks that the knobs are consistent; the error names the knob and the value.
  public func validate() throws {
    func fail(_ message: String) -> PreprocessConfigError {
      PreprocessConfigError(message: message)
    }
    guard cropSize > 0, cropSize <= 16384 else {
      throw fail("crop size must be in 1...16384, got \(cropSize)")
    }
    if let cropPct {
      guard cropPct > 0, cropPct <= 1, cropPct.isFinite else {
        throw fail("crop-pct must be in (0, 1], got \(cropPct)")
      }
    }
    if geometry == .resizeCrop {
      let size = effectiveResizeSize
      guard size > 0, size <= 65536 else {
        throw fail("resize size must be in 1...65536, got \(size)")
      }
      guard cropSize <= size else {
        throw fail("crop size \(cropSize) is larger than the resize size \(size)")
      }
    }
    if geometry == .centralFraction {
      guard centralFraction > 0, centralFraction <= 1, centralFraction.isFinite else {
        throw fail("central fraction must be in (0, 1], got \(centralFraction)")
      }
    }
    guard (0...255).contains(letterboxPad) else {
      throw fail("letterbox pad must be a grey level in 0...255, got \(letterboxPad)")
    }
    guard mean.count == 3, mean.allSatisfy(\.isFinite) else {
      throw fail("mean needs 3 finite values, got \(mean)")
    }
    if let scale {
      guard scale.count == 3, scale.allSatisfy({ $0.isFinite && $0 != 0 }) else {
        throw fail("scale needs 3 finite non-zero values, got \(scale)")
      }
    } else {
      guard std.count == 3, std.allSatisfy({ $0.isFinite && $0 != 0 }) else {
        throw fail("std needs 3 finite non-zero values, got \(std)")
      }
    }
    if chroma != .none {
      guard cropSize % 2 == 0 else {
        throw fail("NV12 needs an even output size (4:2:0 chroma), got crop \(cropSize)")
      }
    }
    if channels == .yuv444 && chroma == .none {
      throw fail("yuv444 output needs an NV12 chroma path (nv12-full or nv12-video)")
    }
  }
}

/// A configuration that cannot work, with the knob and value in the message.
public struct PreprocessConfigError: Error, CustomStringConvertible, Equatable {
  /// What is wrong, naming the knob.
  public let message: String
  /// Same as `message`.
  public var description: String { "preprocess: \(message)" }
}

// MARK: - Presets

/// Named preprocessing recipes, spelled as on the command line.
public enum PreprocessPreset: String, CaseIterable, Sendable {
  /// torchvision ImageNet evaluation: `Resize(256)` (PIL bilinear) → `CenterCrop(224)` →
  /// `ToTensor` → `Normalize(mean, std)`, RGB, NCHW (torchvision `references/classification`
  /// `ClassificationPresetEval`).
  case torchvision
  /// timm `transforms_factory.transforms_imagenet_eval`: `Resize(floor(224 / crop_pct))`
  /// with PIL bicubic, `CenterCrop(224)`, ImageNet mean/std; `crop_pct` defaults to 0.875.
  case timm
  /// Horizon RDK model-zoo recipe (FasterNet configs): OpenCV `INTER_LINEAR` shorter side 256,
  /// centre crop 224 (floor offsets), then through NV12 as the board sees it (BT.601 full
  /// range, the toolchain default for `input_type_rt: nv12`) and back to RGB, mean
  /// 123.675 116.28 103.53, scale 0.01712475 0.017507 0.01742919, NCHW. Use
  /// `--color nv12-full->yuv444` to feed a model that takes the board's YUV444 input.
  case rdk
  /// The RDK board demo path for an arbitrary image: letterbox into 224×224 with OpenCV
  /// `INTER_LINEAR` (ultralytics-style centring, pad 127), then the same NV12 path and
  /// normalisation as `rdk`. The pad value and placement are this tool's documented choice,
  /// not read from the board runtime's source.
  case rdkBoard = "rdk-board"
  /// TensorFlow Lite / TF-slim ImageNet eval: `central_crop(0.875)` then a bilinear resize to
  /// 224×224 without antialias (here OpenCV `INTER_LINEAR`, the half-pixel-centre bilinear
  /// TF2 uses), inputs scaled to [-1, 1] (mean 127.5, std 127.5), NHWC.
  case tflite
  /// EfficientNet-Lite (TF model garden): torchvision geometry, `(x - 127) / 128`.
  case efficientnetLite = "efficientnet-lite"

  /// The configuration this preset stands for.
  public var config: PreprocessConfig {
    switch self {
    case .torchvision:
      return PreprocessConfig()
    case .timm:
      return PreprocessConfig(cropPct: 0.875, interpolation: .pillowBicubic)
    case .rdk:
      return PreprocessConfig(
        interpolation: .cvLinear, cropRounding: .floor, chroma: .nv12Full, channels: .rgb,
        mean: PreprocessConfig.imagenetMean, scale: [0.01712475, 0.017507, 0.01742919])
    case .rdkBoard:
      return PreprocessConfig(
        geometry: .letterbox, letterboxPad: 127, interpolation: .cvLinear,
        cropRounding: .floor, chroma: .nv12Full, channels: .rgb,
        mean: PreprocessConfig.imagenetMean, scale: [0.01712475, 0.017507, 0.01742919])
    case .tflite:
      return PreprocessConfig(
        geometry: .centralFraction, centralFraction: 0.875, interpolation: .cvLinear,
        mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5], layout: .nhwc)
    case .efficientnetLite:
      return PreprocessConfig(mean: [127, 127, 127], std: [128, 128, 128])
    }
  }
}

extension PreprocessConfig {
  /// The knobs `init(preset:overrides:)` accepts, as spelled on the command line.
  public static let overrideKeys: [String] = [
    "geometry", "resize", "crop", "crop-pct", "central-fraction", "letterbox-pad",
    "interpolation", "crop-rounding", "color", "mean", "std", "scale", "layout",
  ]

  /// Builds a configuration from a preset name and command-line style overrides, then
  /// validates it.
  ///
  /// Keys are those in `overrideKeys`. `color` is `rgb`, `bgr`, or
  /// `nv12-full|nv12-video[->rgb|bgr|yuv444]` (default back-conversion `rgb`). `mean`, `std`
  /// and `scale` take 1 or 3 comma-separated numbers; `crop-pct none` clears `crop-pct`.
  public init(preset: String, overrides: [String: String] = [:]) throws {
    guard let named = PreprocessPreset(rawValue: preset.lowercased()) else {
      throw PreprocessConfigError(
        message: "unknown preset '\(preset)'; known: "
          + PreprocessPreset.allCases.map(\.rawValue).joined(separator: ", "))
    }
    var config = named.config
    for key in overrides.keys.sorted() {
      try config.apply(key: key, value: overrides[key] ?? "")
    }
    try config.validate()
    self = config
  }

  /// Sets one knob from its command-line spelling (not validated; call `validate()`).
  public mutating func apply(key: String, value rawValue: String) throws {
    let value = rawValue.trimmingCharacters(in: .whitespaces)
    func fail(_ why: String) -> PreprocessConfigError {
      PreprocessConfigError(message: "--\(key) '\(rawValue)': \(why)")
    }
    func integer() throws -> Int {
      guard let number = Int(value) else { throw fail("expected an integer") }
      return number
    }
    func real() throws -> Double {
      guard let number = Double(value), number.isFinite else { throw fail("expected a number") }
      return number
    }
    func triple() throws -> [Double] {
      let parts = value.split(separator: ",", omittingEmptySubsequences: false)
      let numbers = parts.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
      guard numbers.count == parts.count, numbers.count == 1 || numbers.count == 3,
        numbers.allSatisfy(\.isFinite)
      else { throw fail("expected 1 or 3 comma-separated numbers") }
      return numbers.count == 1 ? Array(repeating: numbers[0], count: 3) : numbers
    }
    func choice<T: RawRepresentable & CaseIterable>(_: T.Type, _ text: String) throws -> T
    where T.RawValue == String {
      guard let parsed = T(rawValue: text.lowercased()) else {
        throw fail("expected one of " + T.allCases.map(\.rawValue).joined(separator: ", "))
      }
      return parsed
    }
    switch key {
    case "geometry": geometry = try choice(Geometry.self, value)
    case "resize":
      resizeSize = try integer()
      cropPct = nil
    case "crop": cropSize = try integer()
    case "crop-pct": cropPct = value.lowercased() == "none" ? nil : try real()
    case "central-fraction": centralFraction = try real()
    case "letterbox-pad": letterboxPad = try integer()
    case "interpolation": interpolation = try choice(Interpolation.self, value)
    case "crop-rounding": cropRounding = try choice(CropRounding.self, value)
    case "color":
      let parts = value.lowercased().components(separatedBy: "->")
      guard parts.count <= 2 else { throw fail("expected at most one '->'") }
      if parts.count == 1, let order = Channels(rawValue: parts[0]), order != .yuv444 {
        chroma = .none
        channels = order
      } else {
        guard parts[0] != Channels.yuv444.rawValue else {
          throw fail("yuv444 needs an NV12 chroma path, e.g. nv12-full->yuv444")
        }
        chroma = try choice(ChromaPath.self, parts[0])
        guard chroma != .none else { throw fail("'none' is not a chroma path") }
        channels = parts.count == 2 ? try choice(Channels.self, parts[1]) : .rgb
      }
    case "mean": mean = try triple()
    case "std":
      std = try triple()
      scale = nil
    case "scale": scale = try triple()
    case "layout": layout = try choice(Layout.self, value)
    default:
      throw PreprocessConfigError(
        message: "unknown preprocessing option '--\(key)'; known: "
          + PreprocessConfig.overrideKeys.map { "--\($0)" }.joined(separator: ", "))
    }
  }
}
