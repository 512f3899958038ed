import Foundation

/// The classes a model predicts: synsets in class-index order with human-readable names.
///
/// ImageNet-1k class *i* is the *i*-th synset in sorted order, the convention of torchvision,
/// timm, Keras and TFDS (not the ILSVRC2012 devkit's `ILSVRC2012_ID`).
public struct ClassIndex: Sendable {
  /// WordNet ids such as `n01440764`, in class-index order.
  public let synsets: [String]
  /// Human-readable names, parallel to `synsets` (the synset itself when no name is known).
  public let names: [String]
  private let indexBySynset: [String: Int]

  /// Number of classes.
  public var count: Int { synsets.count }

  /// Makes an index from synsets in class order; duplicate synsets are an error.
  public init(synsets: [String], names: [String]? = nil, source: String = "<memory>") throws {
    if let names, names.count != synsets.count {
      throw DatasetError.labelFile(
        path: source, line: 0, message: "\(names.count) names for \(synsets.count) synsets")
    }
    var lookup = [String: Int](minimumCapacity: synsets.count)
    for (index, synset) in synsets.enumerated() {
      if let first = lookup[synset] {
        throw DatasetError.labelFile(
          path: source, line: index + 1,
          message: "duplicate synset \(synset) (first on line \(first + 1))")
      }
      lookup[synset] = index
    }
    self.synsets = synsets
    self.names = names ?? synsets
    self.indexBySynset = lookup
  }

  /// The class index of `synset`, or nil if it is not one of these classes.
  public func index(ofSynset synset: String) -> Int? { indexBySynset[synset] }

  /// The shipped ImageNet-1k classes (`labels/imagenet1k_synsets.txt` and names).
  public static func imageNet1k(labelsDirectory: URL? = nil) throws -> ClassIndex {
    let directory = try labelsDirectory ?? ShippedLabels.directory()
    return try load(
      synsetsFile: directory.appendingPathComponent("imagenet1k_class_names.txt"))
  }

  /// Loads one class per line: `n01440764`, `n01440764 tench, Tinca tinca` (Caffe
  /// `synset_words.txt`) or `n01440764<TAB>tench, …`; blank lines are ignored.
  public static func load(synsetsFile url: URL) throws -> ClassIndex {
    let text = try readText(url)
    var synsets: [String] = []
    var names: [String] = []
    for (number, line) in lines(of: text) {
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      guard !trimmed.isEmpty else { continue }
      let synset = String(trimmed.prefix { !$0.isWhitespace })
      guard isSynset(synset) else {
        throw DatasetError.labelFile(
          path: url.path, line: number, message: "expected a synset like n01440764, found \(synset)"
        )
      }
      let name = trimmed.dropFirst(synset.count).trimmingCharacters(in: .whitespaces)
      synsets.append(synset)
      names.append(name.isEmpty ? synset : name)
    }
    return try ClassIndex(synsets: synsets, names: names, source: url.path)
  }
}

/// Ground truth for keyed images: image key (file name without directory and extension, e.g.
/// `ILSVRC2012_val_00000001`) to 0-based class index.
///
/// Class-folder and WebDataset layouts carry their own labels and need none.
public struct GroundTruth: Sendable {
  /// Supported ground-truth file formats.
  public enum Format: String, Sendable, CaseIterable {
    /// Chosen from the first non-blank line: `ImageId,` header = Kaggle, two fields = Caffe,
    /// one field = per-line.
    case auto
    /// Caffe `val.txt`: `ILSVRC2012_val_00000001.JPEG 65` (0-based sorted-synset index).
    case caffe
    /// Kaggle `LOC_val_solution.csv`: `ImageId,PredictionString`; the first token of the
    /// prediction string is the synset (boxes may follow).
    case kaggleCSV
    /// One synset or 0-based class index per line; line *n* labels `ILSVRC2012_val_%08d` *n*,
    /// i.e. the images in sorted file-name order.
    case perLine
  }

  /// Class index by image key.
  public let labels: [String: Int]
  /// Where the labels came from (file path and format), for reports.
  public let source: String

  /// Number of labelled images.
  public var count: Int { labels.count }

  /// Makes ground truth from a dictionary (tests, other tools).
  public init(labels: [String: Int], source: String) {
    self.labels = labels
    self.source = source
  }

  /// The class index for an image key; a trailing image extension and directories are ignored.
  public func label(forKey key: String) -> Int? {
    labels[GroundTruth.normalizedKey(key)]
  }

  /// The shipped 50,000-image ILSVRC2012 validation ground truth.
  public static func imageNetValidation(
    classes: ClassIndex, labelsDirectory: URL? = nil
  ) throws -> GroundTruth {
    let directory = try labelsDirectory ?? ShippedLabels.directory()
    return try load(
      contentsOf: directory.appendingPathComponent("ILSVRC2012_validation_ground_truth.txt"),
      format: .perLine, classes: classes)
  }

  /// Loads a ground-truth file. Every line must parse, every synset or index must be one of
  /// `classes` and every key must appear once; otherwise the error names the file and line.
  public static func load(
    contentsOf url: URL, format: Format = .auto, classes: ClassIndex
  ) throws -> GroundTruth {
    let data = try readData(url)
    // Every run (and every shard) parses a 50,000-line file at start-up: an ASCII byte parser
    // handles the valid files; anything else (non-ASCII text, any error) goes through the
    // `Character`-based parser below, which defines the semantics and the error messages.
    if let parsed = GroundTruthBytes.parse(data, format: format, classes: classes) {
      return GroundTruth(labels: parsed.labels, source: "\(url.path) (\(parsed.format.rawValue))")
    }
    return try load(
      text: String(decoding: data, as: UTF8.self), path: url.path, format: format,
      classes: classes)
  }

  /// The reference parser: `Character` semantics, every error with its file and line.
  static func load(
    text: String, path: String, format: Format, classes: ClassIndex
  ) throws -> GroundTruth {
    let allLines = lines(of: text)
    var resolved = format
    if format == .auto {
      guard let first = allLines.first(where: { !$0.1.allSatisfy(\.isWhitespace) }) else {
        throw DatasetError.labelFile(path: path, line: 0, message: "no labels in the file")
      }
      let fields = first.1.split(whereSeparator: \.isWhitespace)
      if first.1.hasPrefix("ImageId,") {
        resolved = .kaggleCSV
      } else if fields.count == 2 {
        resolved = .caffe
      } else if fields.count == 1 {
        resolved = .perLine
      } else {
        throw DatasetError.labelFile(
          path: path, line: first.0,
          message: "unrecognised ground-truth format (expected Caffe `name index`, Kaggle CSV "
            + "or one label per line)")
      }
    }
    var labels: [String: Int] = [:]
    var firstLine: [String: Int] = [:]
    func fail(_ line: Int, _ message: String) -> DatasetError {
      .labelFile(path: path, line: line, message: message)
    }
    func classIndex(_ token: Substring, line: Int) throws -> Int {
      if let value = Int(token) {
        guard value >= 0, value < classes.count else {
          throw fail(line, "class index \(value) outside 0..<\(classes.count)")
        }
        return value
      }
      guard let value = classes.index(ofSynset: String(token)) else {
        throw fail(line, "unknown synset \(token)")
      }
      return value
    }
    func add(_ key: String, _ label: Int, line: Int) throws {
      if let previous = firstLine[key] {
        throw fail(line, "duplicate label for \(key) (first on line \(previous))")
      }
      firstLine[key] = line
      labels[key] = label
    }
    var perLineCount = 0
    for (number, line) in allLines {
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      if trimmed.isEmpty { continue }
      switch resolved {
      case .auto:
        break
      case .caffe:
        let fields = trimmed.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2 else {
          throw fail(number, "expected `file-name class-index`, found \(fields.count) fields")
        }
        try add(
          normalizedKey(String(fields[0])), try classIndex(fields[1], line: number), line: number)
      case .kaggleCSV:
        if number == allLines.first(where: { !$0.1.allSatisfy(\.isWhitespace) })?.0 {
          guard trimmed.hasPrefix("ImageId,") else {
            throw fail(number, "expected the header `ImageId,PredictionString`")
          }
          continue
        }
        let parts = trimmed.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty,
          let synset = parts[1].split(whereSeparator: \.isWhitespace).first
        else {
          throw fail(number, "expected `ImageId,synset [boxes…]`")
        }
        guard isSynset(String(synset)) else {
          throw fail(number, "expected a synset, found \(synset)")
        }
        try add(normalizedKey(String(parts[0])), try classIndex(synset, line: number), line: number)
      case .perLine:
        let fields = trimmed.split(whereSeparator: \.isWhitespace)
        guard fields.count == 1 else {
          throw fail(
            number, "expected one synset or class index per line, found \(fields.count) fields")
        }
        perLineCount += 1
        try add(
          validationKey(perLineCount), try classIndex(fields[0], line: number), line: number)
      }
    }
    if labels.isEmpty {
      throw DatasetError.labelFile(path: path, line: 0, message: "no labels in the file")
    }
    return GroundTruth(labels: labels, source: "\(path) (\(resolved.rawValue))")
  }

  /// `ILSVRC2012_val_%08d` for a 1-based image number.
  static func validationKey(_ number: Int) -> String {
    let digits = String(number)
    return "ILSVRC2012_val_" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
  }

  /// Drops directories and a known image extension, so `val/x.JPEG` and `x` match.
  static func normalizedKey(_ name: String) -> String {
    var base = Substring(name)
    if let slash = base.lastIndex(of: "/") { base = base[base.index(after: slash)...] }
    if let dot = base.lastIndex(of: "."),
      imageExtensions.contains(base[base.index(after: dot)...].lowercased())
    {
      base = base[..<dot]
    }
    return String(base)
  }
}

/// File extensions treated as images (samples); the bytes decide whether they are JPEG.
let imageExtensions: Set<String> = [
  "jpg", "jpeg", "jpe", "png", "gif", "bmp", "webp", "tif", "tiff",
]

/// True for a WordNet id like `n01440764`.
func isSynset(_ text: String) -> Bool {
  let utf8 = Array(text.utf8)
  return utf8.count == 9 && utf8[0] == UInt8(ascii: "n")
    && utf8[1...].allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
}

/// Finds the shipped `labels/` directory: `$IMAGENET_EVAL_LABELS`, then `labels/` beside or
/// above the executable, then the source checkout this module was built from.
enum ShippedLabels {
  static func directory() throws -> URL {
    let fileManager = FileManager.default
    var candidates: [URL] = []
    if let override = ProcessInfo.processInfo.environment["IMAGENET_EVAL_LABELS"] {
      candidates.append(URL(fileURLWithPath: override))
    }
    var executable = URL(fileURLWithPath: CommandLine.arguments.first ?? ".")
      .resolvingSymlinksInPath()
    for _ in 0..<5 {
      executable.deleteLastPathComponent()
      candidates.append(executable.appendingPathComponent("labels"))
    }
    candidates.append(
      URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("labels"))
    for candidate in candidates
    where fileManager.fileExists(
      atPath: candidate.appendingPathComponent("imagenet1k_synsets.txt").path)
    {
      return candidate
    }
    throw DatasetError.unreadable(
      path: "labels/",
      message: "shipped label files not found (looked in "
        + candidates.map(\.path).joined(separator: ", ") + "); set IMAGENET_EVAL_LABELS")
  }
}

func readText(_ url: URL) throws -> String {
  String(decoding: try readData(url), as: UTF8.self)
}

func readData(_ url: URL) throws -> Data {
  do {
    return try Data(contentsOf: url)
  } catch {
    throw DatasetError.unreadable(path: url.path, message: error.localizedDescription)
  }
}

/// Lines with 1-based numbers; tolerates `\r\n`.
func lines(of text: String) -> [(Int, Substring)] {
  var result: [(Int, Substring)] = []
  var number = 0
  // "\r\n" is one Character in Swift, so it must be matched as a separator of its own.
  for line in text.split(
    omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
  {
    number += 1
    result.append((number, line.hasSuffix("\r") ? line.dropLast() : line))
  }
  if let last = result.last, last.1.isEmpty { result.removeLast() }
  return result
}
