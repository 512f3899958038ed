import Dataset
import Foundation
import Model

/// Checks that the preprocessing produces exactly what the model takes, with a hint naming
/// the option to change.
enum ModelInput {
  /// Checks the model's declared input against `config` before anything slow (calibration,
  /// engine builds) runs. Symbolic dimensions pass here; the engines' concrete shapes are
  /// checked by ``check(_:against:batchSize:modelPath:)`` once built.
  static func check(_ graph: Graph, against config: PreprocessConfig, modelPath: String) throws {
    guard graph.inputs.count == 1, let declared = graph.declaredInputShapes.first,
      declared.count == 4
    else { return }
    let perImage = declared.dropFirst().map { dimension -> Int? in
      if case .fixed(let value) = dimension { return value }
      return nil
    }
    try check(perImage: perImage, against: config, modelPath: modelPath)
  }

  /// Checks that every engine takes `batchSize` images of exactly the preprocessing output.
  static func check(
    _ engines: [any InferenceEngine], against config: PreprocessConfig, batchSize: Int,
    modelPath: String
  ) throws {
    for engine in engines {
      guard engine.inputShape.first == batchSize else {
        throw EvalError(
          .internal,
          "engine \(engine.name) takes batches of \(engine.inputShape.first ?? 0), not \(batchSize)"
        )
      }
      try check(
        perImage: engine.inputShape.dropFirst().map { $0 }, against: config, modelPath: modelPath)
    }
  }

  /// Per image: `perImage` (nil for a symbolic dimension) against the preprocessing output.
  static func check(perImage: [Int?], against config: PreprocessConfig, modelPath: String) throws {
    let side = config.cropSize
    let expected = config.layout == .nchw ? [3, side, side] : [side, side, 3]
    let matches =
      perImage.count == expected.count
      && zip(perImage, expected).allSatisfy { $0.0 == nil || $0.0 == $0.1 }
    guard !matches else { return }
    var hint = ""
    if perImage.count == 3, let first = perImage[0] {
      let nchw = first == 3
      if let h = perImage[nchw ? 1 : 0], let w = perImage[nchw ? 2 : 1] {
        hint =
          h == w && h != side
          ? " (set --crop \(h), and --resize to match the model's recipe)"
          : (nchw != (config.layout == .nchw)
            ? " (set --tensor-layout \(nchw ? "nchw" : "nhwc"))" : "")
      }
    }
    let shape = "[" + perImage.map { $0.map(String.init) ?? "?" }.joined(separator: ", ") + "]"
    throw EvalError(
      .input,
      "\(modelPath): the model input is \(shape) per image but the preprocessing (--preset/overrides) produces \(expected) (\(config.layout.rawValue), crop \(side))\(hint)"
    )
  }
}
