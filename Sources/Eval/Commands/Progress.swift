import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The progress line of a long run, on stderr.
///
/// On a terminal one line is redrawn in place a few times a second; otherwise (a log file, CI)
/// a plain line is printed every `plainInterval` seconds, so logs stay short but show that the
/// run is alive. The image total is shown only when it is known (see `ProgressTotal`), and
/// then the ETA comes from it; otherwise the line says "total unknown" and, when the share of
/// the data's bytes read so far is known, the ETA is extrapolated from that and marked so.
/// The tool never guesses a count.
final class ProgressReporter {
  private let engineNames: [String]
  private let total: Int?
  /// The fraction (0…1) of the data read so far, when known (bytes read / container bytes).
  private let fraction: (() -> Double?)?
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
    alreadyCorrect: [Int]? = nil, enabled: Bool = true, plainInterval: TimeInterval = 5,
    fraction: (() -> Double?)? = nil
  ) {
    self.engineNames = engineNames
    self.total = total
    self.fraction = fraction
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
      parts.append("\(samples) images (total unknown)")
    }
    parts.append(String(format: "%.1f img/s", rate))
    if let total, rate > 0, samples < total {
      parts.append("ETA \(Self.duration(Double(total - samples) / rate))")
    } else if total == nil, let done = fraction?(), done > 0.001, done < 1 {
      // Bytes read grow in proportion to the images processed, so the remaining share of the
      // bytes takes the same time per byte as the share already read.
      let remaining = elapsed * (1 - done) / done
      parts.append("ETA \(Self.duration(remaining)) (from \(Int(done * 100))% of bytes read)")
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

  /// Prints `message` on a line of its own on stderr, clearing a progress line being drawn
  /// on a terminal (the next update redraws it).
  func note(_ message: String) {
    if enabled && isTerminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    printError(message)
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

/// The number of samples a run will process, when it can be known without reading the data:
/// the 50,000 images of the official `ILSVRC2012_img_val.tar` (recognised by name and exact
/// size), or a count of the image files of directories; then narrowed by `--shard` and
/// `--limit`. A class filter (`--classes`) or a tar archive of unknown contents leave it
/// unknown (nil), unless `--limit` is the only bound available, which is then an upper bound
/// the reader may not reach and is only used when nothing else is known.
enum ProgressTotal {
  /// Size in bytes of the official ILSVRC2012 validation tarball.
  static let officialValidationBytes = 6_744_924_160
  /// Images in it.
  static let officialValidationImages = 50_000

  /// The total for `paths` read with the given shard, class filter and limit.
  static func samples(
    paths: [String], shard: Shard, filtered: Bool, limit: Int?
  ) -> Int? {
    var count: Int? = 0
    for path in paths {
      guard let known = count, let here = imageCount(path) else {
        count = nil
        break
      }
      count = known + here
    }
    if filtered { count = nil }
    if let known = count, shard.count > 1 {
      count = known > shard.index ? (known - shard.index + shard.count - 1) / shard.count : 0
    }
    switch (count, limit) {
    case (let known?, let limit?): return min(known, limit)
    case (let known?, nil): return known
    case (nil, let limit?): return limit
    case (nil, nil): return nil
    }
  }

  /// Images in one container, when known without reading it.
  static func imageCount(_ path: String) -> Int? {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      return nil
    }
    let url = URL(fileURLWithPath: path)
    if !isDirectory.boolValue {
      let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber
      if url.lastPathComponent == "ILSVRC2012_img_val.tar",
        size?.intValue == officialValidationBytes
      {
        return officialValidationImages
      }
      return nil
    }
    guard
      let enumerator = FileManager.default.enumerator(
        at: url, includingPropertiesForKeys: [.isRegularFileKey], options: [],
        errorHandler: { _, _ in true })
    else { return nil }
    // The extensions the reader treats as images (`Dataset`'s sample rule).
    let images: Set<String> = ["jpg", "jpeg", "jpe", "png", "gif", "bmp", "webp", "tif", "tiff"]
    var count = 0
    for case let file as URL in enumerator where images.contains(file.pathExtension.lowercased()) {
      if (try? file.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true {
        count += 1
      }
    }
    return count
  }
}
