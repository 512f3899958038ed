import Foundation

/// A transform that makes several tensors from one decoded image, e.g. the RGB tensor a float
/// engine reads and the NV12 round-tripped tensor an int8 engine reads as a board would.
///
/// The pipeline decodes each image once and gives every output its own batch tensor
/// (``Batch/tensors``). As an `ImageTransform` it describes and writes the first output only.
public protocol MultiOutputTransform: ImageTransform {
  /// Floats written per image into each output, in output order.
  var outputElementCounts: [Int] { get }
  /// Writes every output for `image`: `outputs[k]` holds exactly `outputElementCounts[k]`
  /// floats. Throws for an image it cannot handle (recorded as a per-image skip).
  func apply(_ image: RGBImage, into outputs: [UnsafeMutableBufferPointer<Float>]) throws
}

/// One ``Preprocessor`` per configuration, fed from one decode: outputs whose geometry
/// (resize, crop, letterbox, interpolation) is the same share one resampling pass and differ
/// only in colour path, normalisation and layout, so a second output costs a copy and a
/// table lookup pass, not a second resize. Every output is bit-identical to what a lone
/// `Preprocessor` with its configuration writes.
public final class PreprocessorSet: MultiOutputTransform {
  /// The configurations, in output order.
  public let configs: [PreprocessConfig]
  /// Floats per image of each output.
  public let outputElementCounts: [Int]
  /// Floats per image of the first output.
  public var outputElementCount: Int { outputElementCounts[0] }

  private let preprocessors: [Preprocessor]
  /// For each output, the index of the first output with the same geometry (itself if none).
  private let leaders: [Int]

  /// Builds one preprocessor per configuration (at least one); throws
  /// `PreprocessConfigError` for an inconsistent configuration.
  public init(configs: [PreprocessConfig]) throws {
    guard !configs.isEmpty else {
      throw PreprocessConfigError(message: "a preprocessor set needs at least one configuration")
    }
    self.configs = configs
    preprocessors = try configs.map { try Preprocessor(config: $0) }
    outputElementCounts = preprocessors.map(\.outputElementCount)
    let geometries = configs.map(\.geometryOnly)
    leaders = geometries.indices.map { k in geometries.firstIndex(of: geometries[k]) ?? k }
  }

  /// The largest decode size any output needs, so `--fast-decode` keeps every resize a
  /// downscale.
  public func minimumDecodeSize(sourceWidth: Int, sourceHeight: Int) -> (width: Int, height: Int) {
    var width = 0
    var height = 0
    for preprocessor in preprocessors {
      let size = preprocessor.minimumDecodeSize(
        sourceWidth: sourceWidth, sourceHeight: sourceHeight)
      width = max(width, size.width)
      height = max(height, size.height)
    }
    return (width, height)
  }

  /// Writes the first output only.
  public func apply(_ image: RGBImage, into output: UnsafeMutableBufferPointer<Float>) throws {
    try preprocessors[0].apply(image, into: output)
  }

  /// Writes every output; each geometry is rendered once.
  public func apply(_ image: RGBImage, into outputs: [UnsafeMutableBufferPointer<Float>]) throws {
    guard outputs.count == preprocessors.count else {
      throw PreprocessConfigError(
        message: "\(outputs.count) output buffers for \(preprocessors.count) outputs")
    }
    for leader in preprocessors.indices where leaders[leader] == leader {
      let preprocessor = preprocessors[leader]
      try preprocessor.renderGeometry(image)
      // Followers copy the geometry before the leader converts its own canvas in place.
      for follower in preprocessors.indices where follower != leader && leaders[follower] == leader
      {
        try preprocessors[follower].applyGeometry(of: preprocessor, into: outputs[follower])
      }
      preprocessor.convertColour()
      try preprocessor.writeTensorFromCanvas(into: outputs[leader])
    }
  }
}

extension PreprocessConfig {
  /// The configuration with every knob after the geometry stage reset, so two configurations
  /// with equal `geometryOnly` resample identically.
  var geometryOnly: PreprocessConfig {
    var copy = self
    copy.chroma = .none
    copy.channels = .rgb
    copy.mean = PreprocessConfig.imagenetMean
    copy.std = PreprocessConfig.imagenetStd
    copy.scale = nil
    copy.layout = .nchw
    if copy.geometry != .resizeCrop {
      copy.resizeSize = 0
      copy.cropPct = nil
    }
    if copy.geometry != .centralFraction { copy.centralFraction = 0 }
    if copy.geometry != .letterbox { copy.letterboxPad = 0 }
    return copy
  }
}
