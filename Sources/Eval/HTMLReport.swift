import Foundation

/// How faithfully the int8 engine reproduces one layer's float output.
public struct LayerQuality: Codable, Sendable, Equatable {
  /// The ONNX node name.
  public var node: String
  /// Signal-to-quantization-noise ratio of the layer output, in dB.
  public var sqnrDB: Double
  /// Cosine similarity of the layer's float and int8 outputs.
  public var cosine: Double

  /// Creates a layer measurement.
  public init(node: String, sqnrDB: Double, cosine: Double) {
    self.node = node
    self.sqnrDB = sqnrDB
    self.cosine = cosine
  }

  enum CodingKeys: String, CodingKey {
    case node, cosine
    case sqnrDB = "sqnr_db"
  }
}

/// `report.html`: one self-contained page (no scripts, fonts or network) whose charts are
/// inline SVG, so it opens anywhere, offline, and archives as one file.
public enum HTMLReport {
  /// The report file name.
  public static let fileName = "report.html"

  /// Chart colours; the browser test looks for exactly these pixels.
  enum Palette {
    static let histogram = "#1f77b4"
    static let worst = "#d62728"
    static let gained = "#2ca02c"
    static let lost = "#9467bd"
    static let confusion = "#ff7f0e"
    static let sqnr = "#17becf"
  }

  /// Renders the page. `layers` is the int8 engine's per-layer SQNR, when it provides one.
  public static func render(_ summary: Summary, layers: [LayerQuality]? = nil) -> String {
    let m = summary.metrics
    let run = summary.provenance.run
    let engines = run.engines
    var body = ""
    body +=
      "<h1>\(escape(run.model.name)) — ImageNet accuracy, \(escape(engines.joined(separator: " vs ")))</h1>\n"
    body +=
      "<p class=\"muted\">model sha256 <code>\(escape(run.model.sha256))</code> · dataset \(escape(run.dataset)) · labels \(escape(run.labelSource)) · shard \(run.shard)</p>\n"

    body += "<h2>Accuracy</h2>\n" + ReportTable.accuracy(summary).html + "\n"

    if let p = m.paired {
      var table = ReportTable.paired(p)
      table.rows.append(["Skipped samples", String(m.skipped.total)])
      body += "<h2>\(escape(p.reference)) vs \(escape(p.candidate))</h2>\n" + table.html + "\n"

      body += "<h2>Per-class top-1 drop (histogram over \(m.perClass.count) classes)</h2>\n"
      body += dropHistogram(m.perClass.compactMap(\.drop))

      let losers = m.classesThatLost()
      body +=
        losers.isEmpty
        ? "<h2>Classes that lost accuracy</h2>\n"
        : "<h2>The \(losers.count) classes that lost the most (top-1 points)</h2>\n"
      body += horizontalBars(
        losers.map { c in
          Bar(
            label: "\(c.classID) \(c.name ?? "")", value: c.drop ?? 0,
            text: String(format: "−%.1f", c.drop ?? 0), color: Palette.worst)
        }, emptyText: "No class lost accuracy.")

      body += "<h2>Flips</h2>\n"
      body += horizontalBars(
        [
          Bar(
            label: "\(p.reference) right → \(p.candidate) wrong",
            value: Double(p.flips.rightToWrong), text: "\(p.flips.rightToWrong)",
            color: Palette.lost),
          Bar(
            label: "\(p.reference) wrong → \(p.candidate) right",
            value: Double(p.flips.wrongToRight), text: "\(p.flips.wrongToRight)",
            color: Palette.gained),
        ], emptyText: "")

      if let candidate = m.engines[p.candidate] {
        body += "<h2>Top confusion pairs (\(escape(p.candidate)))</h2>\n"
        body += horizontalBars(
          candidate.topConfusions.prefix(15).map { c in
            Bar(
              label:
                "\(c.trueName ?? String(c.trueClass)) → \(c.predictedName ?? String(c.predicted))",
              value: Double(c.count), text: "\(c.count)", color: Palette.confusion)
          }, emptyText: "No mistakes.")
      }
    }

    body += "<h2>Per-layer SQNR of the int8 engine</h2>\n"
    if let layers, !layers.isEmpty {
      body += horizontalBars(
        layers.map {
          Bar(
            label: $0.node, value: $0.sqnrDB,
            text: String(format: "%.1f dB, cos %.4f", $0.sqnrDB, $0.cosine), color: Palette.sqnr)
        }, emptyText: "")
    } else {
      let reason =
        run.calibration?["layer_report"]
        ?? "not available (the int8 engine did not report it)"
      body += "<p class=\"muted\">Per-layer SQNR: \(escape(reason)).</p>\n"
    }

    if let split = m.dropSplit {
      body +=
        "<h2>Where the drop comes from</h2>\n" + ReportTable.dropSplit(split, run: run).html + "\n"
    }

    if m.skipped.total > 0 {
      body += "<h2>Skipped samples</h2>\n" + ReportTable.skipped(m.skipped).html
    }

    let prov = summary.provenance
    body += "<h2>Provenance</h2>\n<ul>\n"
    body +=
      "<li>model <code>\(escape(run.model.path))</code>, \(run.model.parameterCount.map { String(format: "%.2f M parameters", Double($0) / 1e6) } ?? "parameters n/a"), input \(run.model.inputShape.map(String.init).joined(separator: "×"))</li>\n"
    body += "<li>preprocessing: \(escape(MarkdownReport.settings(run.preprocessing)))</li>\n"
    body +=
      "<li>\(MarkdownReport.int8Label(run)): \(escape(run.calibration.map(MarkdownReport.settings) ?? "none"))</li>\n"
    for engine in engines {
      body +=
        "<li>engine \(escape(engine)): \(escape(MarkdownReport.settings(MarkdownReport.engineSettings(summary, engine))))</li>\n"
    }
    if let execution = prov.execution {
      body += "<li>engine schedule: \(escape(execution.summaryLine))</li>\n"
    }
    body +=
      "<li>imagenet-eval \(escape(prov.toolVersion)): <code>\(escape(prov.commandLine.joined(separator: " ")))</code></li>\n"
    body +=
      "<li>wall time \(String(format: "%.1f", prov.wallSeconds)) s, \(prov.imagesPerSecond.map { String(format: "%.1f", $0) } ?? "n/a") images/s\(prov.timings == nil ? "" : " (evaluation only)")</li>\n"
    if let t = prov.timings {
      body +=
        "<li>time: model load \(String(format: "%.1f", t.modelLoad)) s, calibration \(String(format: "%.1f", t.calibration)) s, engine build \(String(format: "%.1f", t.engineBuild)) s, evaluation \(String(format: "%.1f", t.evaluation)) s, total \(String(format: "%.1f", t.total)) s</li>\n"
    }
    for warning in prov.warnings ?? [] { body += "<li>warning: \(escape(warning))</li>\n" }
    body += "</ul>\n"

    return """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <title>\(escape(run.model.name)) — imagenet-eval report</title>
      <style>
      body { font-family: sans-serif; margin: 24px auto; max-width: 1100px; color: #222; background: #fff; }
      h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
      table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
      .muted { color: #666; } svg text { font-family: sans-serif; font-size: 12px; fill: #222; }
      </style></head><body>
      \(body)</body></html>

      """
  }

  struct Bar {
    var label: String
    var value: Double
    var text: String
    var color: String
  }

  /// Labelled horizontal bars, scaled to the largest magnitude.
  static func horizontalBars(_ bars: [Bar], emptyText: String) -> String {
    guard !bars.isEmpty else { return "<p class=\"muted\">\(escape(emptyText))</p>\n" }
    let labelWidth = 330.0
    let plotWidth = 560.0
    let rowHeight = 20.0
    let width = labelWidth + plotWidth + 130
    let height = rowHeight * Double(bars.count) + 10
    let largest = max(bars.map { abs($0.value) }.max() ?? 0, 1e-12)
    var svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\">\n"
    for (i, bar) in bars.enumerated() {
      let y = 5 + rowHeight * Double(i)
      let length = max(1, plotWidth * abs(bar.value) / largest)
      svg +=
        "<text x=\"\(f(labelWidth - 6))\" y=\"\(f(y + 14))\" text-anchor=\"end\">\(escape(truncate(bar.label, 48)))</text>"
      svg +=
        "<rect x=\"\(f(labelWidth))\" y=\"\(f(y + 2))\" width=\"\(f(length))\" height=\"\(f(rowHeight - 4))\" fill=\"\(bar.color)\"/>"
      svg +=
        "<text x=\"\(f(labelWidth + length + 6))\" y=\"\(f(y + 14))\">\(escape(bar.text))</text>\n"
    }
    return svg + "</svg>\n"
  }

  /// A histogram of per-class drops in one-point-or-wider bins, with the zero line marked.
  static func dropHistogram(_ drops: [Double]) -> String {
    guard let low = drops.min(), let high = drops.max() else {
      return "<p class=\"muted\">No classes.</p>\n"
    }
    let binWidth = max(1, ((high - low) / 40).rounded(.up))
    let start = (low / binWidth).rounded(.down) * binWidth
    let binCount = max(1, Int(((high - start) / binWidth).rounded(.down)) + 1)
    var counts = [Int](repeating: 0, count: binCount)
    for d in drops {
      counts[min(binCount - 1, max(0, Int(((d - start) / binWidth).rounded(.down))))] += 1
    }
    let width = 900.0
    let height = 260.0
    let left = 50.0
    let bottom = 40.0
    let plotHeight = height - bottom - 15
    let plotWidth = width - left - 20
    let barWidth = plotWidth / Double(binCount)
    let tallest = Double(counts.max() ?? 1)
    var svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\">\n"
    svg +=
      "<line x1=\"\(f(left))\" y1=\"\(f(height - bottom))\" x2=\"\(f(width - 20))\" y2=\"\(f(height - bottom))\" stroke=\"#444\"/>\n"
    for (i, count) in counts.enumerated() where count > 0 {
      let h = plotHeight * Double(count) / tallest
      let x = left + barWidth * Double(i)
      svg +=
        "<rect x=\"\(f(x + 1))\" y=\"\(f(height - bottom - h))\" width=\"\(f(max(1, barWidth - 2)))\" height=\"\(f(h))\" fill=\"\(Palette.histogram)\"><title>\(f(start + binWidth * Double(i))) to \(f(start + binWidth * Double(i + 1))) points: \(count) classes</title></rect>\n"
    }
    // Each bar is labelled with its bin's lower edge and its count, and zero is marked, so
    // the sign of a drop is readable without hovering.
    for (i, count) in counts.enumerated() where count > 0 {
      let x = left + barWidth * (Double(i) + 0.5)
      let h = plotHeight * Double(count) / tallest
      svg +=
        "<text x=\"\(f(x))\" y=\"\(f(height - bottom + 16))\" text-anchor=\"middle\">\(f(start + binWidth * Double(i)))</text>"
      svg +=
        "<text x=\"\(f(x))\" y=\"\(f(height - bottom - h - 4))\" text-anchor=\"middle\">\(count)</text>\n"
    }
    if start <= 0 && start + binWidth * Double(binCount) > 0 {
      let x = left + plotWidth * (0 - start) / (binWidth * Double(binCount))
      svg +=
        "<line x1=\"\(f(x))\" y1=\"\(f(height - bottom - plotHeight))\" x2=\"\(f(x))\" y2=\"\(f(height - bottom))\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n"
    }
    svg +=
      "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 4))\" text-anchor=\"middle\">classes per top-1 drop bin (points, bin lower edge; positive = candidate worse)</text>\n"
    return svg + "</svg>\n"
  }

  static func f(_ value: Double) -> String {
    let text = String(format: "%.1f", value)
    return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
  }

  static func truncate(_ text: String, _ limit: Int) -> String {
    text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
  }

  static func opt(_ value: Double?, _ decimals: Int = 2) -> String {
    MarkdownReport.opt(value, decimals)
  }

  static func interval(_ values: [Double]) -> String { MarkdownReport.interval(values) }

  /// Escapes text for HTML and SVG content and attributes.
  static func escape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.count)
    for c in text {
      switch c {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.append(c)
      }
    }
    return out
  }
}
