import CArchive
import CTurboJPEG
import Foundation

/// Test inputs made on the fly: JPEGs encoded with TurboJPEG and archives written with
/// libarchive, so fixtures never need to be committed.
public enum Fixtures {
  /// Colour layout of a generated JPEG.
  public enum JPEGKind: Sendable {
    case rgb(subsampling444: Bool)
    case gray
    /// Encoded from CMYK pixels; TurboJPEG writes YCCK with an Adobe marker.
    case cmyk
  }

  /// A deterministic textured pattern: gradients plus a pseudo-random term so the encoder has
  /// real detail to quantise. `channels` is 1, 3 or 4.
  public static func pattern(width: Int, height: Int, channels: Int, seed: UInt32 = 1) -> [UInt8] {
    var state = seed &* 2_654_435_761 | 1
    var pixels = [UInt8](repeating: 0, count: width * height * channels)
    for y in 0..<height {
      for x in 0..<width {
        for c in 0..<channels {
          state ^= state << 13
          state ^= state >> 17
          state ^= state << 5
          let gradient = (x * 255 / max(1, width - 1) + y * 97 / max(1, height) + c * 60) & 0xFF
          let noise = Int(state % 48) - 24
          pixels[(y * width + x) * channels + c] = UInt8(clamping: gradient + noise)
        }
      }
    }
    return pixels
  }

  /// Encodes a pattern (or `pixels`) as JPEG with TurboJPEG's `tjCompress2`.
  public static func jpeg(
    width: Int, height: Int, kind: JPEGKind = .rgb(subsampling444: false), quality: Int32 = 90,
    seed: UInt32 = 1
  ) -> [UInt8] {
    let channels: Int
    let format: Int32
    let subsampling: Int32
    switch kind {
    case .rgb(let full):
      channels = 3
      format = Int32(TJPF_RGB.rawValue)
      subsampling = Int32(full ? TJSAMP_444.rawValue : TJSAMP_420.rawValue)
    case .gray:
      channels = 1
      format = Int32(TJPF_GRAY.rawValue)
      subsampling = Int32(TJSAMP_GRAY.rawValue)
    case .cmyk:
      channels = 4
      format = Int32(TJPF_CMYK.rawValue)
      subsampling = Int32(TJSAMP_444.rawValue)
    }
    let pixels = pattern(width: width, height: height, channels: channels, seed: seed)
    let handle = tjInitCompress()!
    defer { tjDestroy(handle) }
    var output: UnsafeMutablePointer<UInt8>?
    var size: UInt = 0
    let status = pixels.withUnsafeBufferPointer { source in
      tjCompress2(
        handle, source.baseAddress, Int32(width), Int32(width * channels), Int32(height), format,
        &output, &size, subsampling, quality, TJFLAG_ACCURATEDCT)
    }
    precondition(status == 0, "tjCompress2 failed: \(String(cString: tjGetErrorStr2(handle)))")
    defer { tjFree(output) }
    return Array(UnsafeBufferPointer(start: output, count: Int(size)))
  }

  /// A minimal valid PNG signature plus junk: enough for format detection tests.
  public static let pngBytes: [UInt8] =
    [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 7, count: 64)

  /// Compression applied to a written tar.
  public enum Compression: String, CaseIterable, Sendable {
    case none, gzip, xz, bzip2, zstd
    /// Conventional suffix.
    public var fileExtension: String {
      switch self {
      case .none: return "tar"
      case .gzip: return "tar.gz"
      case .xz: return "tar.xz"
      case .bzip2: return "tar.bz2"
      case .zstd: return "tar.zst"
      }
    }
  }

  /// Writes a ustar/pax archive with libarchive's writer. Members are written in order.
  public static func writeTar(
    at url: URL, members: [(name: String, bytes: [UInt8])], compression: Compression = .none
  ) throws {
    let archive = archive_write_new()!
    defer { archive_write_free(archive) }
    func check(_ status: Int32, _ what: String) throws {
      if status != ARCHIVE_OK {
        throw FixtureError(message: "\(what): \(String(cString: archive_error_string(archive)))")
      }
    }
    try check(archive_write_set_format_pax_restricted(archive), "format")
    switch compression {
    case .none: break
    case .gzip: try check(archive_write_add_filter_gzip(archive), "gzip")
    case .xz: try check(archive_write_add_filter_xz(archive), "xz")
    case .bzip2: try check(archive_write_add_filter_bzip2(archive), "bzip2")
    case .zstd: try check(archive_write_add_filter_zstd(archive), "zstd")
    }
    try check(archive_write_open_filename(archive, url.path), "open \(url.path)")
    for member in members {
      let entry = archive_entry_new()!
      defer { archive_entry_free(entry) }
      archive_entry_set_pathname(entry, member.name)
      archive_entry_set_size(entry, Int64(member.bytes.count))
      archive_entry_set_filetype(entry, 0o100000)
      archive_entry_set_perm(entry, 0o644)
      try check(archive_write_header(archive, entry), "header \(member.name)")
      if !member.bytes.isEmpty {
        let written = member.bytes.withUnsafeBytes {
          archive_write_data(archive, $0.baseAddress, $0.count)
        }
        guard written == member.bytes.count else {
          throw FixtureError(message: "short write for \(member.name)")
        }
      }
    }
    try check(archive_write_close(archive), "close")
  }

  /// Writes files under `directory`, creating subdirectories.
  public static func writeDirectory(at directory: URL, files: [(name: String, bytes: [UInt8])])
    throws
  {
    for file in files {
      let url = directory.appendingPathComponent(file.name)
      try FileManager.default.createDirectory(
        at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try Data(file.bytes).write(to: url)
    }
  }

  /// A fixture could not be written.
  public struct FixtureError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
  }
}
