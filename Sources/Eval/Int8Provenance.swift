import Foundation
import Model

/// What every command that builds an int8 engine tells the user and records about it.
enum Int8Provenance {
  /// Prints what a person needs to judge the int8 engine (for a calibrated engine: warnings,
  /// the method chosen and the nodes left in float; for an imported quantized model: its
  /// format and node counts) and returns its entry for the run manifest, `summary.json`,
  /// `bench.json` or a sidecar.
  @discardableResult
  static func report(
    _ engine: Int8Engine, imported: ImportedQuantization?, calibration options: CalibrationOptions,
    setup: Int8Setup? = nil
  ) -> [String: String] {
    if let imported {
      printError("int8: \(imported.headline(engine))")
      return imported.describe(engine, entries: setup?.manifestEntries ?? [:])
    }
    let c = engine.calibration
    for warning in c.warnings { printError("calibration: \(warning)") }
    var method = "calibration: method \(c.method.rawValue) on \(c.imageCount) images"
    if !c.candidateCosines.isEmpty {
      method +=
        " (output cosine to float: "
        + c.candidateCosines.sorted { $0.key < $1.key }.map {
          "\($0.key) \(String(format: "%.6f", $0.value))"
        }.joined(separator: ", ") + ")"
    }
    printError(method)
    if !engine.floatFallbackNodes.isEmpty {
      printError(
        "int8: \(engine.floatFallbackNodes.count) nodes run in float between dequantise and "
          + "quantise: \(engine.floatFallbackNodes.joined(separator: ", "))")
    }
    return options.describe(engine, setup: setup)
  }
}
