import Foundation
import TestSupport
import Testing

@testable import Dataset

/// 23 distinct images `ILSVRC2012_val_00000001…23` labelled `number % 4` as fixture classes.
private struct Fixture23 {
  let directory: URL
  let tar: URL
  let images: [[UInt8]]
  let truth: GroundTruth

  init() throws {
    directory = try TestEnvironment.makeTemporaryDirectory("pipeline")
    images = (1...23).map { Fixtures.jpeg(width: 8 + $0, height: 30 - $0, seed: UInt32($0)) }
    tar = directory.appendingPathComponent("val.tar")
    try Fixtures.writeTar(at: tar, members: images.enumerated().map { (valName($0 + 1), $1) })
    truth = GroundTruth(
      labels: Dictionary(
        uniqueKeysWithValues: (1...23).map {
          (GroundTruth.validationKey($0), fixtureIndices[$0 % 4])
        }),
      source: "fixture")
  }
}

private final class FailingOnWideImages: ImageTransform {
  var outputElementCount: Int { 5 }
  func minimumDecodeSize(sourceWidth: Int, sourceHeight: Int) -> (width: Int, height: Int) {
    (sourceWidth, sourceHeight)
  }
  struct TooWide: Error, CustomStringConvertible {
    var description: String { "too wide" }
  }
  func apply(_ image: RGBImage, into output: UnsafeMutableBufferPointer<Float>) throws {
    if image.width > 25 { throw TooWide() }
    try ChannelMeans().apply(image, into: output)
  }
}

@Suite("Pipeline")
struct PipelineTests {
  @Test("batches are in order and identical for 1, 2 and 3 workers and any prefetch depth")
  func deterministic() throws {
    let fixture = try Fixture23()
    defer { try? FileManager.default.removeItem(at: fixture.directory) }
    let source = try DataSource(paths: [fixture.tar.path])
    let one = try run(
      source, groundTruth: fixture.truth, options: .init(workers: 1, prefetchBatches: 1))
    let two = try run(source, groundTruth: fixture.truth, options: .init(workers: 2))
    let three = try run(
      source, groundTruth: fixture.truth, options: .init(workers: 3, prefetchBatches: 4))
    #expect(one.keys == (1...23).map { GroundTruth.validationKey($0) })
    #expect(one.labels == (1...23).map { fixtureIndices[$0 % 4] })
    #expect(one.rows == (try fixture.images.map(ChannelMeans.expectedRow)))
    #expect(one.batchCounts == [4, 4, 4, 4, 4, 3])
    for other in [two, three] {
      #expect(other.keys == one.keys)
      #expect(other.labels == one.labels)
      #expect(other.rows == one.rows)
      #expect(other.batchCounts == one.batchCounts)
    }
  }

  @Test("limit, shard, class filter and label offset")
  func selection() throws {
    let fixture = try Fixture23()
    defer { try? FileManager.default.removeItem(at: fixture.directory) }
    let source = try DataSource(paths: [fixture.tar.path])
    let limited = try run(source, groundTruth: fixture.truth, options: .init(workers: 2, limit: 6))
    #expect(limited.keys == (1...6).map { GroundTruth.validationKey($0) })
    #expect(limited.batchCounts == [4, 2])
    let shard = try run(
      source, groundTruth: fixture.truth, options: .init(workers: 2, shard: (1, 5)))
    // Sample index % 5 == 1: the 2nd, 7th, … images.
    #expect(shard.keys == [2, 7, 12, 17, 22].map { GroundTruth.validationKey($0) })
    let filtered = try run(
      source, groundTruth: fixture.truth,
      options: .init(workers: 2, labelOffset: 1, classFilter: { $0 == 1000 }))
    #expect(filtered.keys == [3, 7, 11, 15, 19, 23].map { GroundTruth.validationKey($0) })
    #expect(filtered.labels == Array(repeating: 1000, count: 6))
    let shards = try (0..<3).map {
      try run(source, groundTruth: fixture.truth, options: .init(workers: 2, shard: ($0, 3))).keys
    }
    #expect(Set(shards.joined()).count == 23)
    #expect(shards.map(\.count) == [8, 8, 7])
  }

  @Test("skips are compacted out of the tensor; transform failures are skips")
  func compaction() throws {
    let fixture = try Fixture23()
    defer { try? FileManager.default.removeItem(at: fixture.directory) }
    let pipeline = try Pipeline(
      source: try DataSource(paths: [fixture.tar.path]), classes: try ClassIndex.imageNet1k(),
      groundTruth: fixture.truth, batchSize: 8, options: .init(workers: 2),
      transformFactory: { FailingOnWideImages() })
    var keys: [String] = []
    var rows: [[Float]] = []
    var skipped: [SkippedSample] = []
    while let batch = try pipeline.next() {
      keys += batch.keys
      for row in 0..<batch.count { rows.append(Array(batch.tensor[(row * 5)..<(row * 5 + 5)])) }
      #expect(batch.tensor[(batch.count * 5)...].allSatisfy { $0 == 0 })
      skipped += batch.skipped
    }
    // Width 8 + n > 25 for n >= 18.
    #expect(keys == (1...17).map { GroundTruth.validationKey($0) })
    #expect(rows == (try fixture.images[0..<17].map(ChannelMeans.expectedRow)))
    #expect(skipped.map(\.key) == (18...23).map { GroundTruth.validationKey($0) })
    #expect(skipped.allSatisfy { $0.reason == "transform failed: too wide" })
    #expect(pipeline.summary.skipped == 6)
    #expect(pipeline.summary.samples == 23)
  }

  @Test("strict mode makes the first per-image problem fatal")
  func strict() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("strict")
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("val.tar")
    try Fixtures.writeTar(
      at: url,
      members: [(valName(1), fixtureImages[0]), (valName(2), Fixtures.pngBytes), (valName(3), [])])
    let truth = GroundTruth(
      labels: [
        GroundTruth.validationKey(1): 0, GroundTruth.validationKey(2): 0,
        GroundTruth.validationKey(3): 0,
      ],
      source: "t")
    #expect(
      throws: DatasetError.sample(key: "\(url.path):\(valName(2))", reason: "not a JPEG: PNG data")
    ) {
      _ = try run(
        try DataSource(paths: [url.path]), groundTruth: truth, batchSize: 1,
        options: .init(workers: 2, strict: true))
    }
    let lenient = try run(try DataSource(paths: [url.path]), groundTruth: truth, batchSize: 1)
    #expect(lenient.keys.count == 1)
    #expect(lenient.skipped.count == 2)
  }

  @Test("decoder warnings are reported with the kept sample")
  func warnings() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("warn")
    defer { try? FileManager.default.removeItem(at: directory) }
    let damaged = junkBeforeScan(fixtureImages[1])
    let url = directory.appendingPathComponent("val.tar")
    try Fixtures.writeTar(
      at: url, members: [(valName(1), fixtureImages[0]), (valName(2), damaged)])
    let truth = GroundTruth(
      labels: [GroundTruth.validationKey(1): 0, GroundTruth.validationKey(2): 1], source: "t")
    let result = try run(try DataSource(paths: [url.path]), groundTruth: truth)
    #expect(result.keys.count == 2)
    #expect(result.warnings.map(\.key) == [GroundTruth.validationKey(2)])
    #expect(
      result.warnings.first?.message == "Corrupt JPEG data: 2 extraneous bytes before marker 0xda")
    #expect(result.summary?.warnings == 1)
  }

  @Test("stopping early and invalid configurations are clean")
  func lifecycle() throws {
    let fixture = try Fixture23()
    defer { try? FileManager.default.removeItem(at: fixture.directory) }
    let source = try DataSource(paths: [fixture.tar.path])
    let classes = try ClassIndex.imageNet1k()
    do {
      let pipeline = try Pipeline(
        source: source, classes: classes, groundTruth: fixture.truth, batchSize: 2,
        options: .init(workers: 2, prefetchBatches: 1), transformFactory: { ChannelMeans() })
      #expect(try pipeline.next()?.count == 2)
      pipeline.cancel()
      #expect(try pipeline.next() == nil)
    }
    // Dropped after one batch while the reader is blocked on backpressure: must not hang.
    for _ in 0..<5 {
      let pipeline = try Pipeline(
        source: source, classes: classes, groundTruth: fixture.truth, batchSize: 1,
        options: .init(workers: 3, prefetchBatches: 1), transformFactory: { ChannelMeans() })
      _ = try pipeline.next()
    }
    #expect(throws: DatasetError.configuration("batch size must be positive")) {
      try Pipeline(
        source: source, classes: classes, batchSize: 0, transformFactory: { ChannelMeans() })
    }
    #expect(throws: DatasetError.configuration("shard 3 of 3 is not valid")) {
      try Pipeline(
        source: source, classes: classes, batchSize: 1, options: .init(shard: (3, 3)),
        transformFactory: { ChannelMeans() })
    }
    struct FactoryFailure: Error {}
    #expect(throws: FactoryFailure.self) {
      try Pipeline(
        source: source, classes: classes, batchSize: 1, transformFactory: { throw FactoryFailure() }
      )
    }
  }
}

/// The real ILSVRC2012 subset: 1300 images with three independent label sources.
@Suite("Pipeline on real ILSVRC2012 data")
struct PipelineRealDataTests {
  @Test(
    "1300 real images: archive order, same labels from shipped, Caffe and Kaggle ground truth, same batches with 1 and 2 workers",
    .requiresShared,
    .requiresPython)
  func realSubset() throws {
    let tar = TestEnvironment.shared("datasets/ilsvrc2012-val-subset-1300.tar").path
    let listing = try PythonReference.run(
      code:
        "import sys, tarfile\nfor m in tarfile.open(sys.argv[1]):\n    print(m.name) if m.isfile() else None",
      arguments: [tar])
    let expectedKeys = listing.split(separator: "\n").map { GroundTruth.normalizedKey(String($0)) }
    #expect(expectedKeys.count == 1300)

    let classes = try ClassIndex.imageNet1k()
    let source = try DataSource(paths: [tar])
    let shipped = try run(source, classes: classes, batchSize: 32, options: .init(workers: 2))
    let caffe = try run(
      source,
      groundTruth: try GroundTruth.load(
        contentsOf: TestEnvironment.shared("labels/caffe_val.txt"), classes: classes),
      classes: classes, batchSize: 32, options: .init(workers: 1))
    let kaggle = try run(
      source,
      groundTruth: try GroundTruth.load(
        contentsOf: TestEnvironment.shared("labels/LOC_val_solution.csv"), classes: classes),
      classes: classes, batchSize: 32, options: .init(workers: 2))
    #expect(shipped.keys == expectedKeys)
    #expect(shipped.skipped.isEmpty, "\(shipped.skipped.prefix(3))")
    #expect(shipped.labels.count == 1300)
    #expect(caffe.keys == shipped.keys && kaggle.keys == shipped.keys)
    #expect(caffe.labels == shipped.labels)
    #expect(kaggle.labels == shipped.labels)
    // Worker count does not change a single float.
    #expect(caffe.rows == shipped.rows)
    #expect(shipped.batchCounts == Array(repeating: 32, count: 40) + [20])
    #expect(shipped.summary?.layout == .flat)
    #expect(
      shipped.summary?.labelSource.hasSuffix("ILSVRC2012_validation_ground_truth.txt (perLine)")
        == true)
    #expect(Set(shipped.labels).count > 100)
  }
}
