import Foundation

/// How `Int8Engine` calibrates and quantises a float model.
public struct Int8Settings: Sendable {
  /// How the activation thresholds are chosen.
  public enum Method: String, Sendable, CaseIterable {
    /// `CalibrationMethod.max`.
    case max
    /// `CalibrationMethod.percentile` at `percentile`.
    case percentile
    /// `CalibrationMethod.kl`.
    case kl
    /// `CalibrationMethod.mse`.
    case mse
    /// Max, percentile and KL are each tried; the one whose final output is most similar
    /// (cosine) to the float model's on the calibration images is kept.
    case `default`

    var single: CalibrationMethod? {
      switch self {
      case .max: .max
      case .percentile: .percentile
      case .kl: .kl
      case .mse: .mse
      case .default: nil
      }
    }
  }

  /// The calibration method.
  public var method: Method
  /// The percentile of `|x|` used by `.percentile` (and by `.default`'s percentile candidate).
  public var percentile: Double
  /// Activation encoding and weight granularity.
  public var scheme: QuantizationScheme
  /// Nodes (names as in the ONNX model) run in float between dequantise and quantise.
  public var floatNodes: Set<String>
  /// Nodes (names as in the ONNX model) whose output activations are held as int16 codes
  /// (symmetric), the RDK toolchain's `node_info … OutputType: int16`.
  public var int16Nodes: Set<String>

  /// Creates settings; the defaults are the Horizon toolchain's.
  public init(
    method: Method = .default, percentile: Double = 99.995,
    scheme: QuantizationScheme = QuantizationScheme(), floatNodes: Set<String> = [],
    int16Nodes: Set<String> = []
  ) {
    self.method = method
    self.percentile = percentile
    self.scheme = scheme
    self.floatNodes = floatNodes
    self.int16Nodes = int16Nodes
  }
}

/// The outcome of calibrating a model: what `Int8Engine` needs to quantise it, and what the
/// report shows about how it was obtained.
public struct Int8Calibration: Sendable {
  /// The method whose thresholds are kept.
  public let method: CalibrationMethod
  /// The clipping threshold per tensor name.
  public let thresholds: [String: Float]
  /// The observed minimum per tensor name.
  public let minimums: [String: Float]
  /// The observed maximum per tensor name.
  public let maximums: [String: Float]
  /// Images actually calibrated on.
  public let imageCount: Int
  /// Images asked for.
  public let requestedImageCount: Int
  /// Fewer images than asked, constant or all-zero tensors, failed `default` candidates.
  public let warnings: [CalibrationWarning]
  /// For `default`: the final-output cosine every candidate reached (empty otherwise).
  public let candidateCosines: [String: Double]

  /// Creates a calibration (normally made by `Int8Engine.calibrate`).
  public init(
    method: CalibrationMethod, thresholds: [String: Float], minimums: [String: Float],
    maximums: [String: Float], imageCount: Int, requestedImageCount: Int,
    warnings: [CalibrationWarning] = [], candidateCosines: [String: Double] = [:]
  ) {
    self.method = method
    self.thresholds = thresholds
    self.minimums = minimums
    self.maximums = maximums
    self.imageCount = imageCount
    self.requestedImageCount = requestedImageCount
    self.warnings = warnings
    self.candidateCosines = candidateCosines
  }
}

/// How faithfully one quantised node reproduces its float output.
public struct LayerQuality: Codable, Sendable, Equatable {
  /// The node name.
  public var node: String
  /// The op (e.g. `Conv`).
  public var op: String
  /// `10·log10(Σ x² / Σ (x − x̂)²)` over the compared images (infinity when exact).
  public var sqnrDB: Double
  /// Cosine similarity of the float and dequantised int8 outputs.
  public var cosine: Double
  /// The smallest and largest float weight (nil for weightless nodes).
  public var weightMinimum: Float?
  /// See `weightMinimum`.
  public var weightMaximum: Float?
  /// The output's activation scale.
  public var activationScale: Float

  enum CodingKeys: String, CodingKey {
    case node, op, cosine
    case sqnrDB = "sqnr_db"
    case weightMinimum = "weight_min"
    case weightMaximum = "weight_max"
    case activationScale = "activation_scale"
  }
}

/// The layer-wise comparison of an int8 engine with the float model, worst node first.
public struct LayerReport: Codable, Sendable, Equatable {
  /// Images the statistics cover.
  public var imageCount: Int
  /// One entry per quantised node, lowest SQNR first.
  public var layers: [LayerQuality]
}
