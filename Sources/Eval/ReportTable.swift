import Foundation

/// A table both reports show, as plain cell text: `report.md` and `report.html` each escape
/// and mark it up in their own syntax, so the two always carry the same numbers.
struct ReportTable {
  /// Column titles.
  var header: [String]
  /// Cells, row by row, as many as `header`.
  var rows: [[String]]

  /// Top-1 and top-5 with their Wilson 95% intervals and the image count, per engine.
  static func accuracy(_ summary: Summary) -> ReportTable {
    let engines = summary.provenance.run.engines
    return ReportTable(
      header: ["Engine", "Top-1 (%)", "Top-1 95% CI", "Top-5 (%)", "Top-5 95% CI", "Images"],
      rows: engines.compactMap { engine in
        summary.metrics.engines[engine].map { e in
          [
            engine, MarkdownReport.opt(e.top1), MarkdownReport.interval(e.top1CI95),
            MarkdownReport.opt(e.top5), MarkdownReport.interval(e.top5CI95), String(e.images),
          ]
        }
      })
  }

  /// The reference against one candidate: drops, agreement, flips and the test on them, and
  /// how alike the logits are.
  static func paired(_ p: PairedMetrics) -> ReportTable {
    ReportTable(
      header: ["Statistic", "Value"],
      rows: [
        ["Top-1 drop (points)", MarkdownReport.opt(p.top1Drop)],
        ["Top-5 drop (points)", MarkdownReport.opt(p.top5Drop)],
        ["Top-1 agreement (%)", MarkdownReport.opt(p.agreement)],
        ["\(p.reference) right → \(p.candidate) wrong", String(p.flips.rightToWrong)],
        ["\(p.reference) wrong → \(p.candidate) right", String(p.flips.wrongToRight)],
        ["McNemar exact p (two-sided)", String(format: "%.3g", p.mcnemarP)],
        ["Mean logit cosine", MarkdownReport.opt(p.cosine, 6)],
        ["Mean KL (nats)", MarkdownReport.opt(p.kl, 6)],
      ])
  }

  /// The candidate's drop in its quantisation and input-path parts (see ``DropSplit``).
  static func dropSplit(_ split: DropSplit, run: RunManifest) -> ReportTable {
    let inputPath = run.calibration?["input_path"].flatMap { $0.isEmpty ? nil : " (\($0))" } ?? ""
    return ReportTable(
      header: ["Part", "Engines", "Top-1 drop (points)"],
      rows: [
        [
          "Quantisation", "\(split.reference) → \(split.sameInput) (same input tensor)",
          MarkdownReport.opt(split.quantization),
        ],
        [
          "Input path\(inputPath)",
          "\(split.sameInput) → \(split.candidate) (same quantised model)",
          MarkdownReport.opt(split.inputPath),
        ],
        ["Total", "\(split.reference) → \(split.candidate)", MarkdownReport.opt(split.total)],
      ])
  }

  /// The classes that lost the most top-1 from `engines[0]` to `engines[1]`.
  static func classesThatLost(_ classes: [ClassMetrics], engines: [String]) -> ReportTable {
    ReportTable(
      header: [
        "Class", "Name", "Images", "\(engines[0]) top-1 (%)", "\(engines[1]) top-1 (%)",
        "Drop (points)",
      ],
      rows: classes.map { c in
        [
          String(c.classID), c.name ?? "", String(c.images), MarkdownReport.opt(c.top1[engines[0]]),
          MarkdownReport.opt(c.top1[engines[1]]), MarkdownReport.opt(c.drop),
        ]
      })
  }

  /// Skipped samples per reason.
  static func skipped(_ skipped: SkipSummary) -> ReportTable {
    ReportTable(
      header: ["Reason", "Samples"],
      rows: skipped.byReason.keys.sorted().map { [$0, String(skipped.byReason[$0] ?? 0)] })
  }

  /// GitHub-flavoured Markdown, `|` and newlines in cells escaped, ending in a newline.
  var markdown: String {
    func line(_ cells: [String]) -> String {
      "| " + cells.map(MarkdownReport.escape).joined(separator: " | ") + " |\n"
    }
    return line(header) + "| " + header.map { _ in "---" }.joined(separator: " | ") + " |\n"
      + rows.map(line).joined()
  }

  /// An HTML table, cells escaped, ending in a newline.
  var html: String {
    func line(_ cells: [String], _ tag: String) -> String {
      "<tr>" + cells.map { "<\(tag)>\(HTMLReport.escape($0))</\(tag)>" }.joined() + "</tr>\n"
    }
    return "<table>" + line(header, "th") + rows.map { line($0, "td") }.joined() + "</table>\n"
  }
}

extension Metrics {
  /// The classes whose top-1 fell from reference to primary candidate, largest drop first:
  /// real losses only (a class that gained listed here would read as a loss).
  func classesThatLost(limit: Int = 20) -> [ClassMetrics] {
    worstClasses(limit: limit).filter { ($0.drop ?? 0) > 0 }
  }
}
