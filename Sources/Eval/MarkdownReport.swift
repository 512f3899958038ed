import Foundation

/// `report.md`: the model-zoo documentation row, then the statistics behind it.
///
/// Accuracies are rounded to two decimals (`%.2f`) here only; `summary.json` keeps full
/// precision.
public enum MarkdownReport {
  /// The report file name.
  public static let fileName = "report.md"

  /// The model-zoo table header, as the zoo documentation writes it.
  public static let zooHeader =
    "| Model | Size | Categories | Parameter (M) | Floating point precision | Quantization accuracy |\n| --- | --- | --- | --- | --- | --- |"

  /// One model-zoo row: name, input size, classes, parameters in millions, reference and
  /// primary-candidate top-1.
  public static func zooRow(_ summary: Summary) -> String {
    let model = summary.provenance.run.model
    let engines = summary.provenance.run.engines
    let reference = engines.first.flatMap { summary.metrics.engines[$0]?.top1 }
    let candidate = engines.count > 1 ? summary.metrics.engines[engines[1]]?.top1 : nil
    let parameters = model.parameterCount.map { format(Double($0) / 1e6, 2) } ?? "n/a"
    let cells = [
      escape(model.name), inputSize(model.inputShape), String(model.classCount), parameters,
      reference.map { format($0, 2) } ?? "n/a", candidate.map { format($0, 2) } ?? "n/a",
    ]
    return "| " + cells.joined(separator: " | ") + " |"
  }

  /// `H×W` from an NCHW or NHWC input shape.
  static func inputSize(_ shape: [Int]) -> String {
    guard shape.count == 4 else { return shape.map(String.init).joined(separator: "x") }
    if shape[3] <= 4 && shape[1] > 4 { return "\(shape[1])x\(shape[2])" }
    return "\(shape[2])x\(shape[3])"
  }

  /// The whole report.
  public static func render(_ summary: Summary) -> String {
    let m = summary.metrics
    let run = summary.provenance.run
    let engines = run.engines
    var out = "# \(run.model.name): ImageNet accuracy, \(engines.joined(separator: " vs "))\n\n"
    out += zooHeader + "\n" + zooRow(summary) + "\n\n"

    if let quantization = run.calibration?["quantization"] {
      out += "The int8 engine ran an \(escape(quantization)) with the scales and codes it holds; "
      out +=
        "nothing was calibrated. Per-layer report: \(run.calibration?["layer_report"] ?? "not available").\n\n"
    }
    out += "## Accuracy\n\n"
    out +=
      "\(m.images) images evaluated, \(m.skipped.total) skipped, \(m.samples) samples in total.\n\n"
    out += ReportTable.accuracy(summary).markdown + "\n"

    let pairs =
      [m.paired].compactMap { $0 }
      + (m.pairedAdditional ?? [:]).keys.sorted().compactMap {
        m.pairedAdditional?[$0]
      }
    for p in pairs {
      out += "## \(escape(p.reference)) vs \(escape(p.candidate))\n\n"
      out += ReportTable.paired(p).markdown + "\n"
    }

    if let split = m.dropSplit {
      out +=
        "## Where the \(escape(split.reference)) → \(escape(split.candidate)) drop comes from\n\n"
      out += ReportTable.dropSplit(split, run: run).markdown + "\n"
    }

    if engines.count > 1 {
      // Gains are visible in summary.json per_class.
      let worst = m.classesThatLost()
      if worst.isEmpty {
        out += "## Classes that lost accuracy\n\nNo class lost top-1 accuracy.\n\n"
      } else {
        out += "## The \(worst.count) classes that lost the most\n\n"
        out += ReportTable.classesThatLost(worst, engines: engines).markdown + "\n"
      }
    }

    for engine in engines {
      guard let e = m.engines[engine], !e.topConfusions.isEmpty else { continue }
      out +=
        "## Top confusions: \(escape(engine))\n\n| True | Predicted | Images |\n| --- | --- | --- |\n"
      for c in e.topConfusions.prefix(10) {
        out +=
          "| \(c.trueClass) \(escape(c.trueName ?? "")) | \(c.predicted) \(escape(c.predictedName ?? "")) | \(c.count) |\n"
      }
      out += "\n"
    }

    out += "## Skipped samples\n\n"
    if m.skipped.total == 0 {
      out += "None.\n\n"
    } else {
      out += ReportTable.skipped(m.skipped).markdown + "\n"
    }

    let p = summary.provenance
    out += "## Provenance\n\n"
    out += "- model: `\(run.model.path)` sha256 `\(run.model.sha256)`\n"
    out += "- dataset: \(run.dataset); labels: \(run.labelSource); shard: \(run.shard)\n"
    out += "- preprocessing: " + settings(run.preprocessing) + "\n"
    out += "- \(int8Label(run)): " + (run.calibration.map(settings) ?? "none") + "\n"
    for engine in engines {
      out += "- engine \(engine): " + settings(engineSettings(summary, engine)) + "\n"
    }
    if let execution = p.execution {
      out += "- engine schedule: \(execution.summaryLine)\n"
    }
    out += "- imagenet-eval \(p.toolVersion): `\(p.commandLine.joined(separator: " "))`\n"
    out +=
      "- wall time \(format(p.wallSeconds, 1)) s, \(p.imagesPerSecond.map { format($0, 1) } ?? "n/a") images/s"
      + (p.timings == nil ? "" : " (evaluation only)") + "\n"
    if let t = p.timings {
      out +=
        "- time: model load \(format(t.modelLoad, 1)) s, calibration \(format(t.calibration, 1)) s, "
        + "engine build \(format(t.engineBuild, 1)) s, layer report \(format(t.layerReport ?? 0, 1)) s, "
        + "evaluation \(format(t.evaluation, 1)) s "
        + "(\(t.evaluatedSamples) samples\(t.decodedImages.map { ", \($0) decoded" } ?? "")), "
        + "total \(format(t.total, 1)) s\n"
    }
    if let warnings = p.warnings, !warnings.isEmpty {
      out += "\n## Warnings\n\n"
      for warning in warnings { out += "- \(escape(warning))\n" }
    }
    return out
  }

  /// What the manifest's `calibration` entry describes: the calibration, or the quantization
  /// an imported quantized model came with.
  static func int8Label(_ run: RunManifest) -> String {
    run.calibration?["quantization"] == nil ? "calibration" : "int8 quantization (imported)"
  }

  static func settings(_ values: [String: String]) -> String {
    values.isEmpty
      ? "none" : values.keys.sorted().map { "\($0)=\(values[$0]!)" }.joined(separator: ", ")
  }

  static func format(_ value: Double, _ decimals: Int) -> String {
    String(format: "%.\(decimals)f", value)
  }

  static func opt(_ value: Double?, _ decimals: Int = 2) -> String {
    value.map { format($0, decimals) } ?? "n/a"
  }

  static func interval(_ values: [Double]) -> String {
    values.count == 2 ? "[\(format(values[0], 2)), \(format(values[1], 2))]" : "n/a"
  }

  /// Keeps a cell's text from breaking the table.
  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
  }

  /// An engine's versions with the threads and shards it ran with in the arrangement this
  /// session kept (recorded apart from the run identity).
  static func engineSettings(_ summary: Summary, _ engine: String) -> [String: String] {
    let versions = summary.provenance.run.engineVersions[engine] ?? [:]
    guard let execution = summary.provenance.execution,
      let threads = execution.engineThreads[execution.chosen]?[engine]
    else { return versions }
    return versions.merging(threads, uniquingKeysWith: { first, _ in first })
  }
}
