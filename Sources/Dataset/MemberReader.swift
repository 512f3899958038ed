import CArchive
import Foundation

/// One file inside an archive or a directory tree.
struct MemberHeader {
  /// Path relative to the archive root or the directory, without a leading `./`.
  var path: String
  /// Size in bytes as recorded in the archive or file system.
  var size: Int
}

/// Streams the regular files of one container in a fixed order, reading each at most once.
protocol MemberReader: AnyObject {
  /// The archive or directory path, for messages.
  var containerPath: String { get }
  /// The next regular file, or nil at the end. Skips the previous member's unread data.
  func nextMember() throws -> MemberHeader?
  /// Reads the current member completely into `buffer` (grown if needed, never shrunk) and
  /// returns the byte count.
  func readMember(into buffer: inout [UInt8]) throws -> Int
  /// Bytes of the container consumed so far (raw, i.e. compressed, bytes for an archive).
  var bytesConsumed: Int { get }
}

/// Streams a tar archive, optionally gzip/xz/bzip2/zstd/lz4-compressed, with libarchive:
/// sequential, never extracted to disk, memory bounded by the largest member read.
///
/// Order is the order of members in the archive.
final class TarMemberReader: MemberReader {
  let containerPath: String
  private var archive: OpaquePointer?
  private var current: MemberHeader?
  private var lastGood: String?

  init(path: String) throws {
    containerPath = path
    guard let handle = archive_read_new() else {
      throw DatasetError.archive(
        path: path, lastMember: nil, member: nil, message: "libarchive could not allocate a reader")
    }
    archive = handle
    archive_read_support_filter_all(handle)
    archive_read_support_format_tar(handle)
    archive_read_support_format_gnutar(handle)
    // Opening checks the file exists; the format is only recognised at the first header.
    // Opening reads the first block, so a readable file that fails here is not a tar.
    if archive_read_open_filename(handle, path, 1 << 20) != ARCHIVE_OK {
      let readable = FileManager.default.isReadableFile(atPath: path)
      let error =
        readable
        ? failure(nil)
        : DatasetError.unreadable(
          path: path, message: String(cString: archive_error_string(handle)))
      archive_read_free(handle)
      archive = nil
      throw error
    }
  }

  deinit {
    if let archive { archive_read_free(archive) }
  }

  var bytesConsumed: Int {
    guard let archive else { return 0 }
    return Int(max(0, archive_filter_bytes(archive, -1)))
  }

  private func failure(_ member: String?) -> DatasetError {
    var message = "unknown libarchive error"
    if let archive, let text = archive_error_string(archive) { message = String(cString: text) }
    if message == "Unrecognized archive format" {
      message = "not a tar archive (optionally gzip/xz/bzip2/zstd-compressed): \(message)"
    }
    return .archive(path: containerPath, lastMember: lastGood, member: member, message: message)
  }

  func nextMember() throws -> MemberHeader? {
    guard let archive else { return nil }
    if let current { lastGood = current.path }
    current = nil
    while true {
      var entry: OpaquePointer?
      let status = archive_read_next_header(archive, &entry)
      if status == ARCHIVE_EOF { return nil }
      // ARCHIVE_WARN is a usable header (e.g. an odd but readable extension); the rest are not.
      guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else {
        throw failure(nil)
      }
      guard archive_entry_filetype(entry) == 0o100000 else { continue }  // AE_IFREG
      var path = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
      while path.hasPrefix("./") { path.removeFirst(2) }
      let header = MemberHeader(path: path, size: Int(max(0, archive_entry_size(entry))))
      current = header
      return header
    }
  }

  func readMember(into buffer: inout [UInt8]) throws -> Int {
    guard let archive, let current else { return 0 }
    // One spare byte lets the end-of-data read happen without growing the buffer.
    buffer.growScratch(to: current.size + 1)
    // Members in a stream may be longer than their header says only in broken archives;
    // grow rather than trust the header.
    return try readToEnd(
      into: &buffer, minimumGrowth: 4096,
      read: { archive_read_data(archive, $0, $1) }, failure: { failure(current.path) })
  }
}

/// Walks a directory tree and returns its regular files sorted by relative path (byte order),
/// so runs are reproducible on any file system.
final class DirectoryMemberReader: MemberReader {
  let containerPath: String
  private let root: URL
  private var paths: [String] = []
  private var position = 0
  private(set) var bytesConsumed = 0

  init(path: String) throws {
    containerPath = path
    root = URL(fileURLWithPath: path, isDirectory: true)
    guard
      let enumerator = FileManager.default.enumerator(
        at: root, includingPropertiesForKeys: [.isRegularFileKey],
        options: [], errorHandler: { _, _ in true })
    else {
      throw DatasetError.unreadable(path: path, message: "cannot list the directory")
    }
    let rootPath = root.standardizedFileURL.resolvingSymlinksInPath().path
    for case let url as URL in enumerator {
      guard (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true else {
        continue
      }
      var full = url.standardizedFileURL.resolvingSymlinksInPath().path
      if full.hasPrefix(rootPath + "/") {
        full.removeFirst(rootPath.count + 1)
      } else {
        full = url.path.replacingOccurrences(of: root.path + "/", with: "")
      }
      paths.append(full)
    }
    paths.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
  }

  func nextMember() throws -> MemberHeader? {
    guard position < paths.count else { return nil }
    let path = paths[position]
    position += 1
    let attributes = try? FileManager.default.attributesOfItem(
      atPath: root.appendingPathComponent(path).path)
    let size = (attributes?[.size] as? NSNumber)?.intValue ?? 0
    bytesConsumed += size
    return MemberHeader(path: path, size: size)
  }

  func readMember(into buffer: inout [UInt8]) throws -> Int {
    guard position > 0 else { return 0 }
    let file = root.appendingPathComponent(paths[position - 1]).path
    let descriptor = open(file, O_RDONLY)
    guard descriptor >= 0 else {
      throw DatasetError.unreadable(path: file, message: String(cString: strerror(errno)))
    }
    defer { close(descriptor) }
    return try readToEnd(
      into: &buffer, minimumGrowth: 65536, read: { read(descriptor, $0, $1) },
      failure: { DatasetError.unreadable(path: file, message: String(cString: strerror(errno))) })
  }
}

/// Fills `buffer` from its start with `read(destination, capacity)` until `read` returns 0 (the
/// end), growing the buffer by at least `minimumGrowth` bytes (or doubling it) whenever it is
/// full, and returns the byte count. A negative count throws `failure()`, called straight after
/// the failed read so that it can still see `errno`.
private func readToEnd(
  into buffer: inout [UInt8], minimumGrowth: Int,
  read: (UnsafeMutableRawPointer, Int) -> Int, failure: () -> Error
) throws -> Int {
  var total = 0
  while true {
    if total == buffer.count {
      buffer.append(contentsOf: repeatElement(0, count: max(minimumGrowth, total)))
    }
    let count = buffer.withUnsafeMutableBytes { raw in
      read(raw.baseAddress! + total, raw.count - total)
    }
    if count == 0 { return total }
    guard count > 0 else { throw failure() }
    total += count
  }
}
