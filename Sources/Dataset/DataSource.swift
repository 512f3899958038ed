import Foundation

/// Where the images are and how they are laid out.
///
/// A source is one or more containers read in the given order: tar archives (plain or
/// gzip/xz/bzip2/zstd-compressed, detected from the bytes) or directories. Archives are read in
/// member order (the order `tar -t` lists); directories in byte-sorted relative-path order.
///
/// Members with an image extension (`jpg`, `jpeg`, `png`, … any case) are samples; the bytes
/// decide whether they are JPEG. `.cls` members label the adjacent image with the same key.
/// Anything else (README, JSON, …) is ignored and listed in ``PipelineSummary/ignoredMembers``.
/// A zero-length image member is a recorded skip.
public struct DataSource: Sendable, CustomStringConvertible {
  /// How images and labels are arranged.
  public enum Layout: String, Sendable, CaseIterable {
    /// `ILSVRC2012_val_%08d.JPEG` members (any directory prefix); labels from a ground truth.
    case flat
    /// `[val/]n01440764/<name>.JPEG`: the parent folder's synset is the label.
    case classFolder = "class-folder"
    /// WebDataset: `key.jpg|jpeg|JPEG` and `key.cls` (class index as text) adjacent.
    case webDataset = "webdataset"
  }

  /// The archives and directories, in reading order.
  public let paths: [String]
  /// The forced layout, or nil to detect it from the first sample.
  public let layout: Layout?

  /// Makes a source from explicit paths.
  public init(paths: [String], layout: Layout? = nil) throws {
    guard !paths.isEmpty else { throw DatasetError.configuration("no data set path given") }
    self.paths = paths
    self.layout = layout
  }

  /// Makes a source from command-line arguments, expanding brace patterns such as
  /// `val-{0000..0063}.tar` (zero-padded ranges keep their width) or `val-{a,b}.tar`.
  public init(patterns: [String], layout: Layout? = nil) throws {
    var expanded: [String] = []
    for pattern in patterns { expanded += try DataSource.expandBraces(pattern) }
    try self.init(paths: expanded, layout: layout)
  }

  public var description: String {
    let shown =
      paths.count <= 3
      ? paths.joined(separator: ", ") : "\(paths[0]) … \(paths.last!) (\(paths.count) paths)"
    return "\(shown) [\(layout?.rawValue ?? "auto layout")]"
  }

  /// Expands the brace groups of a path pattern, left to right.
  public static func expandBraces(_ pattern: String) throws -> [String] {
    guard let open = pattern.firstIndex(of: "{") else {
      if pattern.contains("}") { throw DatasetError.configuration("unbalanced `}` in \(pattern)") }
      return [pattern]
    }
    guard let close = pattern[open...].firstIndex(of: "}") else {
      throw DatasetError.configuration("unbalanced `{` in \(pattern)")
    }
    let head = String(pattern[..<open])
    let body = String(pattern[pattern.index(after: open)..<close])
    let tail = String(pattern[pattern.index(after: close)...])
    var alternatives: [String]
    if let range = body.range(of: ".."), !body.contains(",") {
      let lowText = String(body[..<range.lowerBound])
      let highText = String(body[range.upperBound...])
      guard let low = Int(lowText), let high = Int(highText), low >= 0, low <= high,
        high - low < 1_000_000
      else {
        throw DatasetError.configuration(
          "bad range {\(body)} in \(pattern): expected {first..last} with 0 <= first <= last")
      }
      let width = lowText.count == highText.count && lowText.hasPrefix("0") ? lowText.count : 0
      alternatives = (low...high).map { value in
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
      }
    } else {
      alternatives = body.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
      guard alternatives.count > 1 || !body.isEmpty else {
        throw DatasetError.configuration("empty braces in \(pattern)")
      }
    }
    var result: [String] = []
    for alternative in alternatives {
      result += try expandBraces(head + alternative + tail)
    }
    return result
  }
}

/// A member that holds no sample (README, metadata, a stray `.cls`), reported for transparency.
public struct IgnoredMember: Sendable, Equatable {
  /// The archive or directory holding the member.
  public var container: String
  /// The member's path inside the container.
  public var member: String
  /// Why it was not used.
  public var reason: String
}

/// One image read from the source, before decoding.
struct RawSample {
  /// Member path without the image extension (unique within a container).
  var key: String
  /// Container and member, for messages.
  var member: String
  /// Bytes in the reader's buffer.
  var byteCount: Int
  /// The label (before any offset) or why there is none.
  var label: Int?
  var problem: String?
}

/// Turns the members of a ``DataSource`` into image samples with labels, grouping adjacent
/// members that share a key (`key.jpg` + `key.cls`).
///
/// Rules, documented for users: members whose extension is an image extension are samples;
/// `.cls` members label the image with the same key; everything else (README, JSON, …) is
/// recorded in `ignored` and otherwise skipped.
final class SampleReader {
  let source: DataSource
  private(set) var layout: DataSource.Layout?
  private let classes: ClassIndex
  private var groundTruth: GroundTruth?
  private let groundTruthProvider: () throws -> GroundTruth
  private(set) var ignored: [IgnoredMember] = []
  /// Provenance of the ground truth once one is in use.
  var groundTruthSource: String? { groundTruth?.source }
  private(set) var ignoredCount = 0
  private static let ignoredKept = 1000

  private var containerIndex = 0
  private var reader: MemberReader?
  /// Bytes of the containers already finished.
  private var finishedBytes = 0

  /// Bytes consumed from all containers so far (see `PipelineSummary.bytesRead`).
  var bytesConsumed: Int { finishedBytes + (reader?.bytesConsumed ?? 0) }

  /// The size of one container: the file size, or the sum of a directory's file sizes.
  static func containerBytes(_ path: String) -> Int {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return 0 }
    guard isDirectory.boolValue else {
      let attributes = try? FileManager.default.attributesOfItem(atPath: path)
      return (attributes?[.size] as? NSNumber)?.intValue ?? 0
    }
    guard
      let enumerator = FileManager.default.enumerator(
        at: URL(fileURLWithPath: path, isDirectory: true),
        includingPropertiesForKeys: [.isRegularFileKey, .fileSizeKey], options: [],
        errorHandler: { _, _ in true })
    else { return 0 }
    var total = 0
    for case let url as URL in enumerator {
      let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey])
      if values?.isRegularFile == true { total += values?.fileSize ?? 0 }
    }
    return total
  }
  private var pending: MemberHeader?
  private var clsScratch: [UInt8] = []

  init(
    source: DataSource, classes: ClassIndex, groundTruth: GroundTruth?,
    groundTruthProvider: @escaping () throws -> GroundTruth
  ) {
    self.source = source
    self.layout = source.layout
    self.classes = classes
    self.groundTruth = groundTruth
    self.groundTruthProvider = groundTruthProvider
  }

  private func ignore(_ member: String, _ reason: String) {
    ignoredCount += 1
    if ignored.count < SampleReader.ignoredKept {
      ignored.append(
        IgnoredMember(container: reader?.containerPath ?? "", member: member, reason: reason))
    }
  }

  /// The next member across all containers, or nil at the very end.
  private func nextHeader() throws -> MemberHeader? {
    if let pending {
      self.pending = nil
      return pending
    }
    while true {
      if reader == nil {
        guard containerIndex < source.paths.count else { return nil }
        let path = source.paths[containerIndex]
        containerIndex += 1
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
          throw DatasetError.unreadable(path: path, message: "no such file or directory")
        }
        reader =
          isDirectory.boolValue
          ? try DirectoryMemberReader(path: path) : try TarMemberReader(path: path)
      }
      if let header = try reader?.nextMember() { return header }
      if let finished = reader {
        finishedBytes +=
          finished is DirectoryMemberReader
          ? finished.bytesConsumed : SampleReader.containerBytes(finished.containerPath)
      }
      reader = nil
    }
  }

  private static func split(_ path: String) -> (stem: String, ext: String) {
    let slash = path.lastIndex(of: "/")
    guard let dot = path.lastIndex(of: "."), slash.map({ dot > $0 }) ?? true,
      dot != path.startIndex, slash.map({ path.index(after: $0) != dot }) ?? true
    else { return (path, "") }
    return (String(path[..<dot]), String(path[path.index(after: dot)...]).lowercased())
  }

  /// Reads the next image sample into `buffer`, or returns nil at the end of the source.
  func next(into buffer: inout [UInt8]) throws -> RawSample? {
    var key: String?
    var imageMember: String?
    var byteCount = 0
    var clsText: String?
    var clsMember: String?
    var container = ""
    var groupContainerIndex = 0
    while let header = try nextHeader() {
      let (stem, ext) = SampleReader.split(header.path)
      let isImage = imageExtensions.contains(ext)
      let isCls = ext == "cls"
      if let key, stem != key || containerIndex != groupContainerIndex {
        pending = header  // The group is complete; this member starts the next one.
        break
      }
      if isImage {
        if imageMember != nil {
          ignore(header.path, "second image for key \(stem)")
          continue
        }
        key = stem
        imageMember = header.path
        container = reader?.containerPath ?? ""
        groupContainerIndex = containerIndex
        byteCount = try reader!.readMember(into: &buffer)
      } else if isCls {
        if clsText != nil {
          ignore(header.path, "second .cls for key \(stem)")
          continue
        }
        key = stem
        clsMember = header.path
        groupContainerIndex = containerIndex
        let count = try reader!.readMember(into: &clsScratch)
        clsText = String(decoding: clsScratch[..<count], as: UTF8.self)
      } else {
        ignore(header.path, "not an image or .cls member")
      }
      // Without a .cls the group ends at the image unless the next member shares its key,
      // which the loop finds out from the next header.
    }
    guard let key else { return nil }
    guard let imageMember else {
      ignore(clsMember ?? key, ".cls without an image")
      return try next(into: &buffer)
    }
    var sample = RawSample(
      key: key, member: "\(container):\(imageMember)", byteCount: byteCount)
    try resolveLabel(&sample, imageMember: imageMember, clsText: clsText)
    return sample
  }

  private func resolveLabel(_ sample: inout RawSample, imageMember: String, clsText: String?) throws
  {
    let components = imageMember.split(separator: "/")
    let parent = components.count >= 2 ? String(components[components.count - 2]) : nil
    if layout == nil {
      if clsText != nil {
        layout = .webDataset
      } else if let parent, isSynset(parent) {
        layout = .classFolder
      } else {
        layout = .flat
      }
    }
    switch layout! {
    case .flat:
      if groundTruth == nil { groundTruth = try groundTruthProvider() }
      if let label = groundTruth!.label(forKey: sample.key) {
        sample.label = label
      } else {
        sample.problem =
          "label missing: \(GroundTruth.normalizedKey(sample.key)) is not in \(groundTruth!.source)"
      }
    case .classFolder:
      guard let parent, isSynset(parent) else {
        sample.problem = "label missing: parent folder of \(imageMember) is not a synset"
        return
      }
      guard let label = classes.index(ofSynset: parent) else {
        sample.problem =
          "label missing: folder \(parent) is not one of the \(classes.count) classes"
        return
      }
      sample.label = label
    case .webDataset:
      guard let clsText else {
        sample.problem = "label missing: no .cls member for \(sample.key)"
        return
      }
      let trimmed = clsText.trimmingCharacters(in: .whitespacesAndNewlines)
      guard let label = Int(trimmed), label >= 0, label < classes.count else {
        sample.problem =
          "invalid .cls for \(sample.key): \(trimmed.prefix(40).debugDescription) is not a class index in 0..<\(classes.count)"
        return
      }
      sample.label = label
    }
  }
}
