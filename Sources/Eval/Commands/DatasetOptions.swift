import ArgumentParser
import Dataset
import Foundation

/// The data and preprocessing options that every command reading images shares (`inspect`,
/// `run`), and the code that turns them into a running ``Pipeline``.
///
/// Commands embed it with `@OptionGroup var dataset: DatasetOptions` and call
/// ``makePipeline(batchSize:)``. Option values are checked in `validate()`, so a bad value is a
/// usage error (exit 1) before any file is opened; problems found while opening files are
/// ``EvalError``s of kind `.input` (also exit 1) that name the file.
public struct DatasetOptions: ParsableArguments {
  /// The data set layout as spelled on the command line (`auto` detects it).
  enum LayoutChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, flat
    case classFolder = "class-folder"
    case webDataset = "webdataset"

    var layout: DataSource.Layout? {
      switch self {
      case .auto: nil
      case .flat: .flat
      case .classFolder: .classFolder
      case .webDataset: .webDataset
      }
    }
  }

  /// Ground-truth formats as spelled on the command line.
  enum LabelFormatChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, caffe, kaggle
    case perLine = "per-line"

    var format: GroundTruth.Format {
      switch self {
      case .auto: .auto
      case .caffe: .caffe
      case .kaggle: .kaggleCSV
      case .perLine: .perLine
      }
    }
  }

  @Option(
    name: .customLong("data"), parsing: .upToNextOption,
    help: ArgumentHelp(
      "Images: tar archives (plain or gzip/xz/bzip2/zstd), directories, or WebDataset shards.",
      discussion:
        "Several values are read in the given order; brace patterns such as "
        + "'val-{0000..0063}.tar' or 'val-{a,b}.tar' expand (zero-padded ranges keep their width). "
        + "@FILE reads a shard list: one path or pattern per line, relative to the list's folder.",
      valueName: "path|pattern"))
  var data: [String] = []

  @Option(
    name: .customLong("layout"),
    help: ArgumentHelp(
      "How images and labels are arranged: auto (detected from the first image), flat "
        + "(ILSVRC2012_val_*.JPEG, labelled by --labels or the shipped ground truth), "
        + "class-folder (<synset>/<image>), webdataset (<key>.jpg + <key>.cls).",
      valueName: "auto|flat|class-folder|webdataset"))
  var layout: LayoutChoice = .auto

  @Option(
    help: ArgumentHelp(
      "Ground truth for a flat layout (default: the shipped ILSVRC2012 validation labels).",
      valueName: "file"))
  var labels: String?

  @Option(
    help: ArgumentHelp(
      "Format of --labels: caffe ('ILSVRC2012_val_00000001.JPEG 65'), kaggle "
        + "(LOC_val_solution.csv), per-line (one synset or index per line, in image order).",
      valueName: "auto|caffe|kaggle|per-line"))
  var labelFormat: LabelFormatChoice = .auto

  @Option(
    help: ArgumentHelp(
      "Class list in model output order, one synset per line (synset_words.txt works); "
        + "default: the 1000 ImageNet-1k synsets in sorted order.",
      valueName: "file"))
  var synsets: String?

  @Option(
    help: ArgumentHelp(
      "Added to every label, e.g. 1 for 1001-class models with background at index 0.",
      valueName: "n"))
  var labelOffset: Int = 0

  /// The preset, its overrides and the decoder flags.
  @OptionGroup var preprocess: PreprocessOptions

  @Option(
    help: ArgumentHelp(
      "Decode+preprocess threads (default: one per core). Results do not depend on it.",
      valueName: "n"))
  var workers: Int?

  @Option(
    help: ArgumentHelp("Stop after this many images (after --shard and --classes).", valueName: "n")
  )
  var limit: Int?

  @Option(
    help: ArgumentHelp(
      "Keep only these classes: 0-based class indices and/or synsets, comma-separated "
        + "(e.g. 0,1,n01530575), or @file with one entry (or a comma list) per line; text after "
        + "the first blank on a line is ignored, so synset_words.txt works.",
      valueName: "list|@file"))
  var classes: String?

  @Option(
    help: ArgumentHelp(
      "Process only images i, i+N, i+2N, … of the data set order (0-based), e.g. 3/8.",
      valueName: "i/N"),
    transform: Shard.init(parsing:))
  var shard: Shard = .whole

  @Flag(help: "Stop at the first image that cannot be used instead of recording a skip.")
  var strict = false

  /// Options with every default; the argument parser fills in the values.
  public init() {}

  /// Checks the values given; whether `--data` is required is the command's call
  /// (``requireData()``): `quantize` can read `--calib` instead.
  public func validate() throws {
    try OptionChecks.require(workers, atLeast: 1, "--workers")
    try OptionChecks.require(limit, atLeast: 0, "--limit")
    try OptionChecks.require(labelOffset, atLeast: 0, "--label-offset")
    if labels == nil && labelFormat != .auto {
      throw ValidationError("--label-format needs --labels")
    }
    if labels != nil && layout != .auto && layout != .flat {
      throw ValidationError(
        "--labels applies to the flat layout; a \(layout.rawValue) layout carries its own labels")
    }
    if let classes {
      _ = try Self.classTokens(classes)
    }
    do {
      for pattern in try dataPatterns() { _ = try DataSource.expandBraces(pattern) }
    } catch let error as ValidationError {
      throw error
    } catch {
      throw ValidationError("--data: \(error)")
    }
  }

  /// Options that read `data` with `preprocess` and every other option at its `run` default
  /// (layout detected, shipped ground truth): how `bench` and `infer` read `--calib`.
  static func reading(_ data: [String], preprocess: PreprocessOptions) throws -> DatasetOptions {
    // Parsed rather than initialised: the argument parser's properties hold no values until
    // parsed.
    var options: DatasetOptions
    do {
      options = try DatasetOptions.parse(["--data"] + data)
    } catch {
      throw EvalError(.input, "--calib: \(message(for: error))")
    }
    options.preprocess = preprocess
    return options
  }

  /// Throws the usage error of a command that reads `--data` when none was given.
  func requireData() throws {
    guard !data.isEmpty else {
      throw ValidationError("--data is required: a tar archive, directory or shard pattern")
    }
  }

  /// The `--data` values with `@list` files replaced by the patterns they hold.
  func dataPatterns() throws -> [String] {
    var patterns: [String] = []
    for value in data {
      guard value.hasPrefix("@") else {
        patterns.append(value)
        continue
      }
      let list = URL(fileURLWithPath: String(value.dropFirst()))
      guard let text = try? String(contentsOf: list, encoding: .utf8) else {
        throw ValidationError("--data: cannot read the shard list \(list.path)")
      }
      let entries = text.split(whereSeparator: \.isNewline)
        .map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty && !$0.hasPrefix("#") }
      guard !entries.isEmpty else {
        throw ValidationError("--data: the shard list \(list.path) names no shards")
      }
      for entry in entries {
        patterns.append(
          entry.hasPrefix("/")
            ? entry : list.deletingLastPathComponent().appendingPathComponent(entry).path)
      }
    }
    return patterns
  }

  /// The `--preset` name.
  var preset: String { preprocess.preset }

  /// The preprocessing configuration: the preset with the overrides applied, validated.
  public func preprocessConfig() throws -> PreprocessConfig { try preprocess.preprocessConfig() }

  /// The JPEG decoder settings.
  public var decoderOptions: JPEGDecoder.Options { preprocess.decoderOptions }

  /// Opens the labels and starts the pipeline: `batchSize` images per batch, one
  /// ``Preprocessor`` per worker.
  ///
  /// `configs` replaces the `--preset` preprocessing: with several, each image is decoded once
  /// and every configuration fills its own tensor (``Batch/tensors``), e.g. RGB for the float
  /// engine and NV12 for the int8 engine.
  ///
  /// Throws ``EvalError`` (`.input`) naming the file or value when a label or class file cannot
  /// be used; data files are opened lazily, so their errors come from ``Pipeline/next()``.
  public func makePipeline(
    batchSize: Int, prefetchBatches: Int = 2, configs: [PreprocessConfig]? = nil
  ) throws -> DatasetPipeline {
    let outputs =
      try configs.flatMap { $0.isEmpty ? nil : $0 } ?? [inputError { try preprocessConfig() }]
    let config = outputs[0]
    let source = try inputError {
      try DataSource(patterns: try dataPatterns(), layout: layout.layout)
    }
    for path in source.paths where !FileManager.default.fileExists(atPath: path) {
      throw EvalError(.input, "--data: \(path) does not exist")
    }
    let classIndex = try inputError {
      try synsets.map { try ClassIndex.load(synsetsFile: URL(fileURLWithPath: $0)) }
        ?? ClassIndex.imageNet1k()
    }
    let groundTruth = try inputError {
      try labels.map {
        try GroundTruth.load(
          contentsOf: URL(fileURLWithPath: $0), format: labelFormat.format, classes: classIndex)
      }
    }
    let selected = try classes.map { try Self.resolveClasses($0, in: classIndex) }
    var options = Pipeline.Options(
      labelOffset: labelOffset, limit: limit,
      shard: shard.count > 1 ? (shard.index, shard.count) : nil, strict: strict,
      decoder: decoderOptions, prefetchBatches: prefetchBatches)
    if let workers { options.workers = workers }
    if let selected {
      let allowed = Set(selected.map { $0 + labelOffset })
      options.classFilter = { allowed.contains($0) }
    }
    let pipeline = try inputError {
      try Pipeline(
        source: source, classes: classIndex, groundTruth: groundTruth, batchSize: batchSize,
        options: options,
        transformFactory: {
          outputs.count == 1
            ? try Preprocessor(config: config) as ImageTransform
            : try PreprocessorSet(configs: outputs)
        })
    }
    var opened = DatasetPipeline(
      pipeline: pipeline, source: source, classes: classIndex, groundTruth: groundTruth,
      preprocess: config, decoder: decoderOptions, labelOffset: labelOffset,
      selectedClasses: selected, workers: options.workers)
    opened.outputs = outputs
    return opened
  }

  /// Splits a `--classes` value into tokens; `@file` reads one entry (or comma list) per line.
  static func classTokens(_ value: String) throws -> [String] {
    var text = value
    var fromFile = false
    if value.hasPrefix("@") {
      let path = String(value.dropFirst())
      guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("--classes: cannot read the class list file \(path)")
      }
      fromFile = true
      text = contents.split(whereSeparator: \.isNewline).map { line in
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        return String(trimmed.prefix { !$0.isWhitespace })
      }.filter { !$0.isEmpty && !$0.hasPrefix("#") }.joined(separator: ",")
    }
    let tokens = text.split(separator: ",", omittingEmptySubsequences: false).map {
      $0.trimmingCharacters(in: .whitespaces)
    }
    guard !tokens.isEmpty, !text.isEmpty else {
      throw ValidationError(
        "--classes: no classes in '\(value)'" + (fromFile ? " (the file is empty)" : ""))
    }
    for token in tokens {
      if token.isEmpty {
        throw ValidationError("--classes: empty entry in '\(value)' (stray comma?)")
      }
      if let number = Int(token) {
        guard number >= 0 else {
          throw ValidationError("--classes: class index \(number) is negative")
        }
      } else if !Self.looksLikeSynset(token) {
        throw ValidationError(
          "--classes: '\(token)' is neither a class index nor a synset like n01440764")
      }
    }
    return tokens
  }

  /// The 0-based class indices named by a `--classes` value, sorted, without duplicates.
  static func resolveClasses(_ value: String, in classIndex: ClassIndex) throws -> [Int] {
    let tokens: [String]
    do {
      tokens = try classTokens(value)
    } catch let error as ValidationError {
      throw EvalError(.input, error.message)
    }
    var result = Set<Int>()
    for token in tokens {
      if let number = Int(token) {
        guard number < classIndex.count else {
          throw EvalError(
            .input, "--classes: class index \(number) is outside 0..<\(classIndex.count)")
        }
        result.insert(number)
      } else {
        guard let index = classIndex.index(ofSynset: token) else {
          throw EvalError(.input, "--classes: synset \(token) is not one of the model's classes")
        }
        result.insert(index)
      }
    }
    return result.sorted()
  }

  private static func looksLikeSynset(_ token: String) -> Bool {
    token.count == 9 && token.first == "n" && token.dropFirst().allSatisfy(\.isASCIIDigit)
  }
}

extension Character {
  fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// A started pipeline and everything that went into it, for reports and manifests.
public struct DatasetPipeline {
  /// The running pipeline; call ``Pipeline/next()`` until it returns nil.
  public let pipeline: Pipeline
  /// The containers, in reading order.
  public let source: DataSource
  /// The model's classes, in output order.
  public let classes: ClassIndex
  /// The `--labels` ground truth, or nil (layout labels or the shipped validation labels).
  public let groundTruth: GroundTruth?
  /// The preprocessing every image went through.
  public let preprocess: PreprocessConfig
  /// The decoder settings.
  public let decoder: JPEGDecoder.Options
  /// The `--label-offset`.
  public let labelOffset: Int
  /// The `--classes` selection as 0-based class indices (without the offset), or nil for all.
  public let selectedClasses: [Int]?
  /// Worker threads.
  public let workers: Int
  /// The preprocessing of every tensor the pipeline fills, `preprocess` first.
  public var outputs: [PreprocessConfig] = []

  /// The synset of a pipeline label (offset applied), or nil when it is outside the classes.
  public func synset(forLabel label: Int) -> String? {
    let index = label - labelOffset
    return classes.synsets.indices.contains(index) ? classes.synsets[index] : nil
  }
}

/// Runs `body`, turning library errors into input errors that keep their message.
func inputError<T>(_ body: () throws -> T) throws -> T {
  do {
    return try body()
  } catch let error as EvalError {
    throw error
  } catch let error as PreprocessConfigError {
    throw EvalError(.input, error.description)
  } catch {
    throw EvalError(.input, "\(error)")
  }
}
