import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The progress line of a long run, on stderr.
///
/// On a terminal one line is redrawn in place a few times a second; otherwise (a log file, CI)
/// a plain line is printed every `plainInterval` seconds, so logs stay short but show that the
/// run is alive. The total, and with it the ETA, is shown only when it is known (e.g. from
/// `--limit`); the tool never guesses it.
final class ProgressReporter {
  private let engineNames: [String]
  private let total: Int?
  private let isTerminal: Bool
  private let enabled: Bool
  private let start = Date()
  private var lastDraw = Date.distantPast
  private let plainInterval: TimeInterval
  /// Samples processed in this session (the rate counts only these).
  private var sessionSamples = 0
  /// Samples recorded in total, resumed ones included.
  private var samples = 0
  private var evaluated = 0
  private var correct: [Int]

  /// `alreadyDone` samples were recorded by an earlier session (resume); `correct` holds their
  /// top-1 hits per engine so the running accuracy covers the whole log.
  init(
    engineNames: [String], total: Int?, alreadyDone: Int = 0, alreadyEvaluated: Int = 0,
    alreadyCorrect: [Int]? = nil, enabled: Bool = true, plainInterval: TimeInterval = 5
  ) {
    self.engineNames = engineNames
    self.total = total
    self.enabled = enabled
    self.isTerminal = isatty(2) == 1
    self.plainInterval = plainInterval
    samples = alreadyDone
    evaluated = alreadyEvaluated
    correct = alreadyCorrect ?? Array(repeating: 0, count: engineNames.count)
  }

  /// Counts newly written records and redraws when it is time.
  func add(_ records: [ImageRecord], processed: Int) {
    sessionSamples += processed
    samples += records.count
    for record in records {
      guard let engines = record.engines, let label = record.label else { continue }
      evaluated += 1
      for (e, name) in engineNames.enumerated() where engines[name]?.top5.first == label {
        correct[e] += 1
      }
    }
    let now = Date()
    if now.timeIntervalSince(lastDraw) >= (isTerminal ? 0.25 : plainInterval) {
      lastDraw = now
      draw(final: false)
    }
  }

  /// Prints the final state and ends the redrawn line.
  func finish() {
    draw(final: true)
  }

  /// The text of the progress line.
  func line() -> String {
    let elapsed = Date().timeIntervalSince(start)
    let rate = elapsed > 0 ? Double(sessionSamples) / elapsed : 0
    var parts = [String]()
    if let total {
      parts.append("\(samples)/\(total) images")
    } else {
      parts.append("\(samples) images")
    }
    parts.append(String(format: "%.1f img/s", rate))
    if let total, rate > 0, samples < total {
      parts.append("ETA \(Self.duration(Double(total - samples) / rate))")
    }
    if evaluated > 0 {
      let accuracies = zip(engineNames, correct).map { name, hits in
        "\(name) " + String(format: "%.2f%%", 100 * Double(hits) / Double(evaluated))
      }
      parts.append("top-1 " + accuracies.joined(separator: ", "))
    }
    parts.append("elapsed \(Self.duration(elapsed))")
    return parts.joined(separator: " | ")
  }

  private func draw(final: Bool) {
    guard enabled else { return }
    let text = line()
    if isTerminal {
      FileHandle.standardError.write(Data(("\r\u{1B}[K" + text + (final ? "\n" : "")).utf8))
    } else {
      FileHandle.standardError.write(Data((text + "\n").utf8))
    }
  }

  /// `1h02m03s`, `4m05s` or `6s`.
  static func duration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let total = Int(seconds.rounded())
    let h = total / 3600
    let m = total % 3600 / 60
    let s = total % 60
    if h > 0 { return String(format: "%dh%02dm%02ds", h, m, s) }
    if m > 0 { return String(format: "%dm%02ds", m, s) }
    return "\(s)s"
  }
}
