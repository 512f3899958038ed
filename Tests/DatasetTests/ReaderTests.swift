import Foundation
import TestSupport
import Testing

@testable import Dataset

/// Ground truth for `ILSVRC2012_val_0000000{1…5}`: labels 0, 1, 2, 999, 0.
private let fiveLabels = GroundTruth(
  labels: Dictionary(
    uniqueKeysWithValues: (1...5).map {
      (GroundTruth.validationKey($0), [0, 1, 2, 999, 0][$0 - 1])
    }),
  source: "test")

private func temporary() throws -> URL { try TestEnvironment.makeTemporaryDirectory("reader") }

private func errorText(_ body: () throws -> Void) -> String? {
  do {
    try body()
    return nil
  } catch {
    return "\(error)"
  }
}

@Suite("Readers and layouts")
struct ReaderTests {
  /// Flat members in a deliberately unsorted order, plus a README.
  private func flatMembers() -> [(name: String, bytes: [UInt8])] {
    [
      (valName(3), fixtureImages[2]), (valName(1), fixtureImages[0]),
      ("README.txt", Array("not an image".utf8)), (valName(2), fixtureImages[1]),
      (valName(5), fixtureImages[4]), (valName(4), fixtureImages[3]),
    ]
  }

  @Test(
    "flat tarball in every compression: archive order, ground-truth labels, README ignored",
    arguments: Fixtures.Compression.allCases)
  func flatTar(compression: Fixtures.Compression) throws {
    let directory = try temporary()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("val.\(compression.fileExtension)")
    try Fixtures.writeTar(at: url, members: flatMembers(), compression: compression)
    let result = try run(try DataSource(paths: [url.path]), groundTruth: fiveLabels)
    #expect(result.keys == [3, 1, 2, 5, 4].map { GroundTruth.validationKey($0) })
    #expect(result.labels == [2, 0, 1, 0, 999])
    #expect(
      result.rows == (try [2, 0, 1, 4, 3].map { try ChannelMeans.expectedRow(fixtureImages[$0]) }))
    #expect(result.skipped.isEmpty)
    #expect(result.summary?.layout == .flat)
    #expect(
      result.summary?.ignoredMembers == [
        IgnoredMember(
          container: url.path, member: "README.txt", reason: "not an image or .cls member")
      ])
    #expect(result.batchCounts == [4, 1])
  }

  @Test("flat directory with a Caffe ground-truth file, read in sorted name order")
  func flatDirectory() throws {
    let directory = try temporary()
    defer { try? FileManager.default.removeItem(at: directory) }
    try Fixtures.writeDirectory(at: directory.appendingPathComponent("val"), files: flatMembers())
    let labels = directory.appendingPathComponent("val.txt")
    try (1...5).map { "\(valName($0)) \([0, 1, 2, 999, 0][$0 - 1])" }.joined(separator: "\n")
      .write(to: labels, atomically: true, encoding: .utf8)
    let classes = try ClassIndex.imageNet1k()
    let truth = try GroundTruth.load(contentsOf: labels, classes: classes)
    let result = try run(
      try DataSource(paths: [directory.appendingPathComponent("val").path]), groundTruth: truth)
    #expect(result.keys == (1...5).map { GroundTruth.validationKey($0) })
    #expect(result.labels == [0, 1, 2, 999, 0])
    #expect(result.summary?.labelSource == "\(labels.path) (caffe)")
  }

  @Test("class-folder tar with a val/ prefix and class-folder directory")
  func classFolders() throws {
    let directory = try temporary()
    defer { try? FileManager.default.removeItem(at: directory) }
    let members: [(name: String, bytes: [UInt8])] = [
      ("val/n15075141/b.JPEG", fixtureImages[0]), ("val/n01440764/a.JPEG", fixtureImages[1]),
      ("val/n01443537/z.jpeg", fixtureImages[2]), ("val/n01443537/y.jpg", fixtureImages[3]),
    ]
    let tar = directory.appendingPathComponent("folders.tar.gz")
    try Fixtures.writeTar(at: tar, members: members, compression: .gzip)
    let fromTar = try run(try DataSource(paths: [tar.path]))
    #expect(
      fromTar.keys == ["val/n15075141/b", "val/n01440764/a", "val/n01443537/z", "val/n01443537/y"])
    #expect(fromTar.labels == [999, 0, 1, 1])
    #expect(fromTar.summary?.layout == .classFolder)
    #expect(fromTar.summary?.labelSource == "class folder names")

    let tree = directory.appendingPathComponent("tree")
    try Fixtures.writeDirectory(at: tree, files: members)
    let fromDirectory = try run(try DataSource(paths: [tree.path]))
    #expect(
      fromDirectory.keys == [
        "val/n01440764/a", "val/n01443537/y", "val/n01443537/z", "val/n15075141/b",
      ])
    #expect(fromDirectory.labels == [0, 1, 1, 999])
    #expect(fromDirectory.rows[0] == (try ChannelMeans.expectedRow(fixtureImages[1])))
  }

  @Test("WebDataset shards from a brace pattern, .cls before or after the image")
  func webDataset() throws {
    let directory = try temporary()
    defer { try? FileManager.default.removeItem(at: directory) }
    try Fixtures.writeTar(
      at: directory.appendingPathComponent("val-0000.tar"),
      members: [
        ("s/000.jpg", fixtureImages[0]), ("s/000.cls", Array("2\n".utf8)),
        ("s/001.cls", Array("999".utf8)), ("s/001.JPEG", fixtureImages[1]),
        ("s/001.json", Array("{}".utf8)),
      ])
    try Fixtures.writeTar(
      at: directory.appendingPathComponent("val-0001.tar"),
      members: [
        ("s/002.jpeg", fixtureImages[2]), ("s/002.cls", Array("0".utf8)),
        ("s/003.jpg", fixtureImages[3]),
        ("s/004.jpg", fixtureImages[4]), ("s/004.cls", Array("one".utf8)),
      ], compression: .zstd)
    let source = try DataSource(
      patterns: [directory.appendingPathComponent("val-{0000..0001}.tar").path])
    #expect(source.paths.count == 2)
    // The second shard is zstd-compressed but named .tar: the filter is found from the bytes.
    let result = try run(source)
    #expect(result.summary?.layout == .webDataset)
    #expect(result.keys == ["s/000", "s/001", "s/002"])
    #expect(result.labels == [2, 999, 0])
    #expect(
      result.skipped.map(\.reason) == [
        "label missing: no .cls member for s/003",
        "invalid .cls for s/004: \"one\" is not a class index in 0..<1000",
      ])
    #expect(result.summary?.ignoredMembers.map(\.member) == ["s/001.json"])
  }

  @Test("brace patterns: padded ranges, comma lists, nesting and errors")
  func braces() throws {
    #expect(
      try DataSource.expandBraces("val-{0000..0003}.tar") == (0...3).map { "val-000\($0).tar" })
    #expect(try DataSource.expandBraces("a{8..11}") == ["a8", "a9", "a10", "a11"])
    #expect(try DataSource.expandBraces("{x,y}-{1..2}") == ["x-1", "x-2", "y-1", "y-2"])
    #expect(try DataSource.expandBraces("plain.tar") == ["plain.tar"])
    #expect(throws: DatasetError.self) { try DataSource.expandBraces("a{1..") }
    #expect(throws: DatasetError.self) { try DataSource.expandBraces("a{3..1}") }
  }

  @Test("per-image problems become recorded skips in order")
  func skips() throws {
    let directory = try temporary()
    defer { try? FileManager.default.removeItem(at: directory) }
    let good = fixtureImages[0]
    let large = Fixtures.jpeg(width: 64, height: 64)
    let url = directory.appendingPathComponent("bad.tar")
    try Fixtures.writeTar(
      at: url,
      members: [
        (valName(1), good), (valName(2), []), (valName(3), Fixtures.pngBytes),
        (valName(4), Array(large[0..<(large.count * 3 / 4)])), (valName(5), good),
        (valName(6), good),
      ])
    let result = try run(try DataSource(paths: [url.path]), groundTruth: fiveLabels, batchSize: 3)
    #expect(result.keys == [GroundTruth.validationKey(1), GroundTruth.validationKey(5)])
    #expect(result.skipped.map(\.reason).count == 4)
    let reasons = result.skipped.map(\.reason)
    #expect(reasons[0] == "empty member (0 bytes)")
    #expect(reasons[1] == "not a JPEG: PNG data")
    #expect(reasons[2].hasPrefix("truncated JPEG"))
    #expect(reasons[3] == "label missing: ILSVRC2012_val_00000006 is not in test")
    #expect(result.skipped[1].member == "\(url.path):\(valName(3))")
    // Batch 0 = samples 1-3 (one valid), batch 1 = samples 4-6 (one valid).
    #expect(result.batchCounts == [1, 1])
    #expect(result.summary?.skipped == 4)
  }

  @Test("non-tar, truncated and missing archives are clear errors")
  func badArchives() throws {
    let directory = try temporary()
    defer { try? FileManager.default.removeItem(at: directory) }
    let notTar = directory.appendingPathComponent("notes.tar")
    try Data("just some text, definitely not a tar archive\n".utf8).write(to: notTar)
    #expect(
      errorText { _ = try run(try DataSource(paths: [notTar.path]), groundTruth: fiveLabels) }
        == "archive \(notTar.path): not a tar archive (optionally gzip/xz/bzip2/zstd-compressed): "
        + "Unrecognized archive format; no member was read completely")

    let full = directory.appendingPathComponent("full.tar")
    try Fixtures.writeTar(at: full, members: flatMembers())
    let bytes = try Data(contentsOf: full)
    // Cut inside the fourth image's data (members are 512-byte aligned; the third header +
    // data are well before 60% of the archive for these sizes).
    let truncated = directory.appendingPathComponent("truncated.tar")
    try bytes.prefix(bytes.count * 6 / 10).write(to: truncated)
    let text = errorText {
      _ = try run(try DataSource(paths: [truncated.path]), groundTruth: fiveLabels)
    }
    #expect(text?.hasPrefix("archive \(truncated.path): ") == true, "\(text ?? "no error")")
    #expect(text?.contains("last good member:") == true, "\(text ?? "no error")")

    let missing = directory.appendingPathComponent("missing.tar").path
    #expect(
      errorText { _ = try run(try DataSource(paths: [missing]), groundTruth: fiveLabels) }
        == "cannot read \(missing): no such file or directory")
  }

  @Test("samples read before a truncation are delivered before the error")
  func truncationAfterBatches() throws {
    let directory = try temporary()
    defer { try? FileManager.default.removeItem(at: directory) }
    let members = (1...5).map { (valName($0), fixtureImages[$0 - 1]) }
    let full = directory.appendingPathComponent("full.tar")
    try Fixtures.writeTar(at: full, members: members)
    let bytes = try Data(contentsOf: full)
    let truncated = directory.appendingPathComponent("cut.tar")
    // Drop the tail of the last member's data and the end-of-archive blocks.
    try bytes.prefix(bytes.count - 1024 - 600).write(to: truncated)
    let pipeline = try Pipeline(
      source: try DataSource(paths: [truncated.path]), classes: try ClassIndex.imageNet1k(),
      groundTruth: fiveLabels, batchSize: 2, options: .init(workers: 2),
      transformFactory: { ChannelMeans() })
    var keys: [String] = []
    do {
      while let batch = try pipeline.next() { keys += batch.keys }
      Issue.record("no error for a truncated archive")
    } catch {
      #expect(
        "\(error)".contains(
          "(while reading member \(valName(5))); last good member: \(valName(4))"),
        "\(error)")
    }
    #expect(keys == (1...4).map { GroundTruth.validationKey($0) })
  }

  @Test("a forced layout overrides detection")
  func forcedLayout() throws {
    let directory = try temporary()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("val.tar")
    try Fixtures.writeTar(
      at: url, members: [("n01440764/ILSVRC2012_val_00000001.JPEG", fixtureImages[0])])
    let detected = try run(try DataSource(paths: [url.path]), groundTruth: fiveLabels)
    #expect(detected.summary?.layout == .classFolder)
    let forced = try run(try DataSource(paths: [url.path], layout: .flat), groundTruth: fiveLabels)
    #expect(forced.summary?.layout == .flat)
    #expect(forced.labels == [0])
    let wrong = try run(try DataSource(paths: [url.path], layout: .webDataset))
    #expect(
      wrong.skipped.map(\.reason) == [
        "label missing: no .cls member for n01440764/ILSVRC2012_val_00000001"
      ])
  }
}
