import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Written when a run (or shard) has seen its whole dataset, so `merge` can tell finished
/// shards from interrupted ones and check that the shards cover every sample.
public struct RunCompletion: Codable, Sendable, Equatable {
  /// Samples in the whole dataset (all shards), in the deterministic order.
  public var datasetSampleCount: Int
  /// Records (evaluated plus skipped) in this run's log.
  public var records: Int
  /// Seconds spent, summed over resumed sessions.
  public var wallSeconds: Double

  /// Creates a completion marker.
  public init(datasetSampleCount: Int, records: Int, wallSeconds: Double) {
    self.datasetSampleCount = datasetSampleCount
    self.records = records
    self.wallSeconds = wallSeconds
  }

  enum CodingKeys: String, CodingKey {
    case records
    case datasetSampleCount = "dataset_sample_count"
    case wallSeconds = "wall_seconds"
  }
}

/// The crash-safe per-image log of a run: `run.json` (identity), `predictions.jsonl` (one
/// ``ImageRecord`` per line, in sample order) and, at the end, `completion.json`.
///
/// Records are written with one `write` per batch, so after `kill -9` at most the last line
/// is torn; the log is `fsync`ed every few seconds and when the run finishes. Resuming drops
/// a torn line and continues after the last complete record: nothing is lost and nothing is
/// counted twice.
public final class ResultLog {
  /// The manifest file name.
  public static let manifestFileName = "run.json"
  /// The per-image record file name.
  public static let recordsFileName = "predictions.jsonl"
  /// The completion marker file name.
  public static let completionFileName = "completion.json"

  /// The output directory.
  public let directory: URL
  /// The identity of the run being written.
  public let manifest: RunManifest
  /// Every record in the log, resumed ones first, in sample order.
  public private(set) var records: [ImageRecord]
  /// Bytes of a torn final line dropped when resuming (0 when the log ended cleanly).
  public let droppedTornBytes: Int
  /// Wall time of earlier sessions, read back from the completion marker on resume.
  public let previousWallSeconds: Double

  private var descriptor: Int32
  private var lineBuffer = [UInt8]()
  private var lastSync = Date()
  private static let syncInterval: TimeInterval = 5

  /// The highest sample index already recorded; a resumed run continues after it.
  public var lastIndex: Int? { records.last?.index }

  /// Opens the log in `directory` for `manifest`.
  ///
  /// Without `resume`, the directory must not already hold a run. With `resume`, a directory
  /// holding the same run (every identity field equal) is continued; a different run is
  /// refused with an ``EvalError`` of kind `.inconsistentRun` naming each differing field.
  /// Resuming into an empty directory simply starts the run, so a retried job needs no
  /// special case.
  public init(directory: URL, manifest: RunManifest, resume: Bool) throws {
    self.directory = directory
    self.manifest = manifest
    let fileManager = FileManager.default
    do {
      try fileManager.createDirectory(at: directory, withIntermediateDirectories: true)
    } catch {
      throw EvalError(
        .input, "cannot create output directory \(directory.path): \(error.localizedDescription)")
    }
    let manifestURL = directory.appendingPathComponent(Self.manifestFileName)
    let recordsURL = directory.appendingPathComponent(Self.recordsFileName)
    let hasManifest = fileManager.fileExists(atPath: manifestURL.path)
    let recordsSize =
      (try? fileManager.attributesOfItem(atPath: recordsURL.path)[.size] as? Int) ?? nil
    var existing = [ImageRecord]()
    var dropped = 0
    var previousWall = 0.0
    if resume && hasManifest {
      let stored = try RunManifest.read(from: manifestURL)
      let differences = stored.differences(from: manifest)
      guard differences.isEmpty else {
        throw EvalError(
          .inconsistentRun,
          "cannot resume in \(directory.path): it holds a different run "
            + "(\(Self.manifestFileName) there vs this run):\n  "
            + differences.joined(separator: "\n  ")
            + "\nUse another --out, or rerun with the original settings.")
      }
      let log = try Self.readLog(at: recordsURL, shard: manifest.shard, allowTornTail: true)
      if log.tornBytes > 0 {
        guard truncate(recordsURL.path, off_t(log.completeBytes)) == 0 else {
          throw EvalError(
            .input,
            "cannot truncate the torn last line of \(recordsURL.path): \(String(cString: strerror(errno)))"
          )
        }
      }
      existing = log.records
      dropped = log.tornBytes
      let completionURL = directory.appendingPathComponent(Self.completionFileName)
      if let completion = try? RunCompletion.read(from: completionURL) {
        previousWall = completion.wallSeconds
      }
    } else if resume && (recordsSize ?? 0) > 0 {
      throw EvalError(
        .inconsistentRun,
        "cannot resume in \(directory.path): \(Self.recordsFileName) exists but \(Self.manifestFileName) does not, so the run cannot be identified"
      )
    } else if !resume && (hasManifest || (recordsSize ?? 0) > 0) {
      throw EvalError(
        .inconsistentRun,
        "\(directory.path) already holds a run (\(hasManifest ? Self.manifestFileName : Self.recordsFileName)); pass --resume to continue it, or choose an empty --out"
      )
    }
    if !hasManifest || !resume {
      try manifest.write(to: manifestURL)
    }
    let flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (hasManifest && resume ? 0 : O_TRUNC)
    let fd = open(recordsURL.path, flags, 0o644)
    guard fd >= 0 else {
      throw EvalError(
        .input, "cannot open \(recordsURL.path) for writing: \(String(cString: strerror(errno)))")
    }
    descriptor = fd
    records = existing
    droppedTornBytes = dropped
    previousWallSeconds = previousWall
  }

  deinit {
    if descriptor >= 0 { _ = Glibc.close(descriptor) }
  }

  /// Appends one batch with a single `write`, in sample order after every earlier record.
  public func append(_ batch: [ImageRecord]) throws {
    guard !batch.isEmpty else { return }
    guard descriptor >= 0 else { throw EvalError(.internal, "append after the log was closed") }
    var previous = lastIndex ?? -1
    lineBuffer.removeAll(keepingCapacity: true)
    for record in batch {
      guard record.index > previous else {
        throw EvalError(
          .internal,
          "record \(record.key) has sample index \(record.index), not after \(previous): records must be appended once, in order"
        )
      }
      guard manifest.shard.contains(record.index) else {
        throw EvalError(
          .internal,
          "record \(record.key) (sample \(record.index)) is not in shard \(manifest.shard)")
      }
      previous = record.index
      RecordCoding.encode(record, into: &lineBuffer)
      lineBuffer.append(0x0A)
    }
    try lineBuffer.withUnsafeBytes { try writeAll($0) }
    records.append(contentsOf: batch)
    if Date().timeIntervalSince(lastSync) >= Self.syncInterval {
      try synchronize()
    }
  }

  /// Forces the log to stable storage.
  public func synchronize() throws {
    guard descriptor >= 0 else { return }
    guard fsync(descriptor) == 0 else {
      throw EvalError(
        .input,
        "cannot sync \(directory.appendingPathComponent(Self.recordsFileName).path): \(String(cString: strerror(errno)))"
      )
    }
    lastSync = Date()
  }

  /// Syncs and closes the log and writes `completion.json`; call once the pipeline has seen
  /// all `datasetSampleCount` samples of the dataset. `wallSeconds` is this session's time;
  /// earlier sessions' time is added.
  @discardableResult
  public func finish(datasetSampleCount: Int, wallSeconds: Double) throws -> RunCompletion {
    try synchronize()
    close()
    let completion = RunCompletion(
      datasetSampleCount: datasetSampleCount, records: records.count,
      wallSeconds: previousWallSeconds + wallSeconds)
    try writeAtomically(
      JSONEncoder.canonical.encode(completion),
      to: directory.appendingPathComponent(Self.completionFileName))
    return completion
  }

  /// Closes the file without a completion marker (an interrupted run).
  public func close() {
    if descriptor >= 0 {
      _ = Glibc.close(descriptor)
      descriptor = -1
    }
  }

  private func writeAll(_ raw: UnsafeRawBufferPointer) throws {
    guard var pointer = raw.baseAddress else { return }
    var remaining = raw.count
    while remaining > 0 {
      let written = write(descriptor, pointer, remaining)
      if written < 0 {
        if errno == EINTR { continue }
        throw EvalError(
          .input,
          "cannot write to \(directory.appendingPathComponent(Self.recordsFileName).path): \(String(cString: strerror(errno)))"
        )
      }
      remaining -= written
      pointer += written
    }
  }

  /// The records of a log file, checked: every line parses, indices strictly increase and
  /// belong to `shard`. A final line without a newline is a torn write from a crash; it is
  /// dropped when `allowTornTail`, an error otherwise.
  static func readLog(at url: URL, shard: Shard, allowTornTail: Bool) throws -> (
    records: [ImageRecord], completeBytes: Int, tornBytes: Int
  ) {
    guard FileManager.default.fileExists(atPath: url.path) else { return ([], 0, 0) }
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw EvalError(.input, "cannot read \(url.path): \(error.localizedDescription)")
    }
    let completeBytes = (data.lastIndex(of: 0x0A).map { $0 - data.startIndex + 1 }) ?? 0
    let tornBytes = data.count - completeBytes
    if tornBytes > 0 && !allowTornTail {
      throw EvalError(
        .inconsistentRun,
        "\(url.path) ends with a torn line (\(tornBytes) bytes without a newline): the run was interrupted; resume it first"
      )
    }
    let decoder = JSONDecoder.canonical
    var records = [ImageRecord]()
    var lineNumber = 0
    var previous = -1
    for line in data.prefix(completeBytes).split(separator: 0x0A, omittingEmptySubsequences: false)
    {
      lineNumber += 1
      if line.isEmpty { continue }
      let record: ImageRecord
      if let fast = line.withUnsafeBytes({ RecordCoding.decode($0.bindMemory(to: UInt8.self)) }) {
        record = fast
      } else {
        do {
          record = try decoder.decode(ImageRecord.self, from: Data(line))
        } catch {
          throw EvalError(
            .input, "\(url.path):\(lineNumber): malformed record: \(describe(error))")
        }
      }
      guard record.index > previous else {
        throw EvalError(
          .inconsistentRun,
          "\(url.path):\(lineNumber): sample index \(record.index) (\(record.key)) does not follow \(previous): duplicate or out-of-order record"
        )
      }
      guard shard.contains(record.index) else {
        throw EvalError(
          .inconsistentRun,
          "\(url.path):\(lineNumber): sample index \(record.index) (\(record.key)) does not belong to shard \(shard)"
        )
      }
      previous = record.index
      records.append(record)
    }
    return (records, completeBytes, tornBytes)
  }
}

extension RunCompletion {
  /// Reads `completion.json`, naming the file in any error.
  public static func read(from url: URL) throws -> RunCompletion {
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw EvalError(.input, "cannot read \(url.path): \(error.localizedDescription)")
    }
    do {
      return try JSONDecoder.canonical.decode(RunCompletion.self, from: data)
    } catch {
      throw EvalError(.input, "malformed \(url.path): \(describe(error))")
    }
  }
}
