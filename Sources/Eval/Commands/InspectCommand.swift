import ArgumentParser
import Dataset
import Foundation

/// `imagenet-eval inspect --data …`: streams the data set through decoding and preprocessing
/// without a model and reports what it found, optionally dumping the first tensors.
struct InspectCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect",
    abstract: "Read and preprocess a data set without a model; report what was found.",
    discussion: """
      Prints the layout, the number of images and classes, where the labels came from, \
      skipped images (counted by reason, with the first keys), decoder warnings, ignored \
      archive members and the decode+preprocess throughput (overall, and after the first \
      batch, so one-off start-up such as parsing label files is not counted).

      --dump N --dump-dir DIR writes the first N preprocessed images as float32 .npy files, \
      one per image, named <index>_<key>.npy (index zero-padded to 5 digits, '/' and other \
      unsafe characters in the key replaced by '_'), shaped [3, H, W] for nchw or [H, W, 3] \
      for nhwc, exactly the floats the model would get. DIR/index.json lists each file with \
      its key, label and synset, plus the preprocessing and decoder settings, so the tensors \
      can be compared with another pipeline (np.load).

      Exit status: 0 success (skips are reported, not failures); 1 usage or input error \
      (missing file, bad option, unreadable archive, a skip under --strict); 2 internal error.
      """)

  @OptionGroup var dataset: DatasetOptions

  @Option(help: ArgumentHelp("Write the first N preprocessed images as .npy.", valueName: "n"))
  var dump: Int = 0

  @Option(help: ArgumentHelp("Directory for --dump (created if needed).", valueName: "dir"))
  var dumpDir: String?

  @Flag(help: "Print the report as JSON instead of text.")
  var json = false

  /// Images per pipeline batch; inspect has no model, so this only sets the hand-off grain.
  static let batchSize = 32
  /// Keys listed per skip reason and for warnings.
  static let examplesPerReason = 5

  func validate() throws {
    try dataset.requireData()
    try OptionChecks.require(dump, atLeast: 0, "--dump")
    if dump > 0 && dumpDir == nil { throw ValidationError("--dump needs --dump-dir") }
    if dump == 0 && dumpDir != nil { throw ValidationError("--dump-dir needs --dump N") }
  }

  func run() throws {
    let report = try inspect()
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
      let data = try encoder.encode(report)
      print(String(decoding: data, as: UTF8.self))
    } else {
      print(report.text, terminator: "")
    }
  }

  /// Streams the whole selection and gathers the report (and the dump).
  func inspect() throws -> InspectReport {
    let dumpDirectory = try dumpDir.map { path -> URL in
      let url = URL(fileURLWithPath: path)
      do {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
      } catch {
        throw EvalError(
          .input, "--dump-dir: cannot create \(url.path): \(error.localizedDescription)")
      }
      return url
    }
    let clock = ContinuousClock()
    let start = clock.now
    let opened = try dataset.makePipeline(batchSize: Self.batchSize)
    let pipeline = opened.pipeline
    var images = 0
    var classCounts: [Int: Int] = [:]
    var unlabelled = 0
    var skipCounts: [String: Int] = [:]
    var skipExamples: [String: [String]] = [:]
    var warnings: [InspectReport.Warning] = []
    var dumped: [InspectReport.DumpedImage] = []
    let config = opened.preprocess
    let shape =
      config.layout == .nchw
      ? [3, config.cropSize, config.cropSize] : [config.cropSize, config.cropSize, 3]
    // When the first batch arrived and how many samples it held: the steady-state rate starts
    // there, after label loading and pipeline start-up.
    var firstBatch: (time: ContinuousClock.Instant, samples: Int)?
    while true {
      let batch: Batch?
      batch = try inputError { try pipeline.next() }
      guard let batch else { break }
      if firstBatch == nil { firstBatch = (clock.now, batch.count + batch.skipped.count) }
      for skip in batch.skipped {
        let reason = Self.reasonCategory(skip.reason)
        skipCounts[reason, default: 0] += 1
        if skipExamples[reason, default: []].count < Self.examplesPerReason {
          skipExamples[reason, default: []].append("\(skip.member): \(skip.reason)")
        }
      }
      for warning in batch.warnings where warnings.count < Self.examplesPerReason {
        warnings.append(.init(member: warning.member, message: warning.message))
      }
      for (position, label) in batch.labels.enumerated() {
        if label >= 0 { classCounts[label, default: 0] += 1 } else { unlabelled += 1 }
        guard let dumpDirectory, dumped.count < dump else { continue }
        let key = batch.keys[position]
        let file = String(format: "%05d_", dumped.count) + Self.fileSafe(key) + ".npy"
        let values = Array(
          batch.tensor[(position * batch.elementCount)..<((position + 1) * batch.elementCount)])
        do {
          try NumpyFile.write(
            NumpyArray(shape: shape, values: values),
            to: dumpDirectory.appendingPathComponent(file))
        } catch {
          throw EvalError(.input, "--dump-dir: cannot write \(file): \(error)")
        }
        dumped.append(
          .init(
            index: dumped.count, file: file, key: key, label: label,
            synset: opened.synset(forLabel: label)))
      }
      images += batch.count
    }
    let end = clock.now
    let seconds = Double((end - start) / .microseconds(1)) / 1e6
    let summary = pipeline.summary
    var steadyRate: Double?
    if let firstBatch, summary.samples > firstBatch.samples, end > firstBatch.time {
      let steadySeconds = Double((end - firstBatch.time) / .microseconds(1)) / 1e6
      steadyRate = Double(summary.samples - firstBatch.samples) / steadySeconds
    }
    if let dumpDirectory {
      let index = InspectReport.DumpIndex(
        dtype: "float32", shape: shape, layout: config.layout.rawValue, preprocess: config,
        fastDCT: opened.decoder.fastDCT, fastDecode: opened.decoder.fastDecode,
        labelOffset: opened.labelOffset, images: dumped)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
      do {
        try encoder.encode(index).write(to: dumpDirectory.appendingPathComponent("index.json"))
      } catch {
        throw EvalError(.input, "--dump-dir: cannot write index.json: \(error)")
      }
    }
    let reasons = skipCounts.keys.sorted().map { reason in
      InspectReport.SkipReason(
        reason: reason, count: skipCounts[reason] ?? 0, examples: skipExamples[reason] ?? [])
    }
    return InspectReport(
      data: opened.source.paths, layout: summary.layout?.rawValue,
      labelSource: opened.groundTruth?.source ?? summary.labelSource,
      samples: summary.samples, images: images, unlabelled: unlabelled,
      classesPresent: classCounts.count, classCount: opened.classes.count,
      selectedClasses: opened.selectedClasses?.count,
      skipped: summary.skipped, skipReasons: reasons,
      warningCount: summary.warnings, warnings: warnings,
      ignoredMemberCount: summary.ignoredMemberCount,
      ignoredMembers: summary.ignoredMembers.prefix(Self.examplesPerReason).map {
        "\($0.container):\($0.member): \($0.reason)"
      },
      preset: dataset.preset, preprocess: config, fastDCT: opened.decoder.fastDCT,
      fastDecode: opened.decoder.fastDecode, workers: opened.workers, seconds: seconds,
      imagesPerSecond: seconds > 0 ? Double(summary.samples) / seconds : 0,
      steadyImagesPerSecond: steadyRate,
      dumped: dumped.count, dumpDirectory: dumpDirectory?.path)
  }

  /// The part of a skip reason before the first colon (`not a JPEG: PNG data` -> `not a JPEG`),
  /// so skips group by kind rather than by file.
  static func reasonCategory(_ reason: String) -> String {
    if reason.hasPrefix("invalid .cls") { return "invalid .cls" }
    guard let colon = reason.firstIndex(of: ":") else { return reason }
    return String(reason[..<colon])
  }

  /// `key` with anything but letters, digits, `.`, `-` and `_` replaced by `_`.
  static func fileSafe(_ key: String) -> String {
    String(
      key.map { character in
        character.isASCII && (character.isLetter || character.isNumber || "._-".contains(character))
          ? character : "_"
      })
  }
}

/// What `inspect` found; the `--json` output.
struct InspectReport: Codable, Equatable {
  /// A group of skips with the same reason.
  struct SkipReason: Codable, Equatable {
    var reason: String
    var count: Int
    /// `container:member: full reason` of the first few.
    var examples: [String]
  }

  /// An image kept despite a decoder warning.
  struct Warning: Codable, Equatable {
    var member: String
    var message: String
  }

  /// One dumped tensor.
  struct DumpedImage: Codable, Equatable {
    var index: Int
    var file: String
    var key: String
    /// Label as the model sees it (offset applied).
    var label: Int
    var synset: String?
  }

  /// `index.json` of a dump directory.
  struct DumpIndex: Codable, Equatable {
    var dtype: String
    var shape: [Int]
    var layout: String
    var preprocess: PreprocessConfig
    var fastDCT: Bool
    var fastDecode: Bool
    var labelOffset: Int
    var images: [DumpedImage]
  }

  var data: [String]
  var layout: String?
  var labelSource: String
  /// Images entered (valid plus skipped).
  var samples: Int
  /// Images decoded and preprocessed.
  var images: Int
  var unlabelled: Int
  var classesPresent: Int
  var classCount: Int
  var selectedClasses: Int?
  var skipped: Int
  var skipReasons: [SkipReason]
  var warningCount: Int
  var warnings: [Warning]
  var ignoredMemberCount: Int
  var ignoredMembers: [String]
  var preset: String
  var preprocess: PreprocessConfig
  var fastDCT: Bool
  var fastDecode: Bool
  var workers: Int
  /// Wall time from option parsing to the last batch, label loading included.
  var seconds: Double
  /// All samples over `seconds`.
  var imagesPerSecond: Double
  /// Samples after the first batch over the time after it: decode+preprocess throughput
  /// without the one-off start-up (label files, threads); nil when there was one batch.
  var steadyImagesPerSecond: Double?
  var dumped: Int
  var dumpDirectory: String?

  /// The human-readable report.
  var text: String {
    var lines: [String] = []
    lines.append(
      "data:            \(data.count == 1 ? data[0] : "\(data.count) paths: \(data[0]) …")")
    lines.append("layout:          \(layout ?? "unknown (no image found)")")
    lines.append("labels:          \(labelSource)")
    lines.append("images:          \(images) of \(samples) read (\(skipped) skipped)")
    var classes = "\(classesPresent) of \(classCount) present"
    if let selectedClasses { classes += " (\(selectedClasses) selected by --classes)" }
    lines.append("classes:         \(classes)")
    if unlabelled > 0 { lines.append("unlabelled:      \(unlabelled)") }
    let c = preprocess
    lines.append(
      "preprocess:      \(preset): \(c.geometry.rawValue) resize \(c.effectiveResizeSize) "
        + "crop \(c.cropSize) \(c.interpolation.rawValue) \(c.chroma.rawValue)/\(c.channels.rawValue) "
        + "\(c.layout.rawValue)" + (fastDCT ? " fast-dct" : "") + (fastDecode ? " fast-decode" : "")
    )
    var throughput =
      "throughput:      \(String(format: "%.1f", imagesPerSecond)) images/s "
      + "(\(String(format: "%.2f", seconds)) s, \(workers) worker\(workers == 1 ? "" : "s")"
    if let steadyImagesPerSecond {
      throughput +=
        "; \(String(format: "%.1f", steadyImagesPerSecond)) images/s after the first batch"
    }
    lines.append(throughput + ")")
    if !skipReasons.isEmpty {
      lines.append("skipped by reason:")
      for group in skipReasons {
        lines.append("  \(group.count)  \(group.reason)")
        for example in group.examples { lines.append("      \(example)") }
        if group.count > group.examples.count {
          lines.append("      … \(group.count - group.examples.count) more")
        }
      }
    }
    if warningCount > 0 {
      lines.append("decoder warnings: \(warningCount) (images kept, as Pillow keeps them)")
      for warning in warnings { lines.append("      \(warning.member): \(warning.message)") }
    }
    if ignoredMemberCount > 0 {
      lines.append("ignored members: \(ignoredMemberCount)")
      for member in ignoredMembers { lines.append("      \(member)") }
      if ignoredMemberCount > ignoredMembers.count {
        lines.append("      … \(ignoredMemberCount - ignoredMembers.count) more")
      }
    }
    if let dumpDirectory {
      lines.append("dumped:          \(dumped) tensors -> \(dumpDirectory) (index.json)")
    }
    return lines.joined(separator: "\n") + "\n"
  }
}
