import Foundation
import TestSupport
import Testing

@testable import Dataset

/// A transform that counts how often it is applied and writes two outputs of different sizes
/// (the channel means, and the width and height), to check the pipeline's bookkeeping.
private final class CountingPair: MultiOutputTransform {
  nonisolated(unsafe) static var applications = 0
  static let lock = NSLock()
  var outputElementCounts: [Int] { [5, 2] }
  var outputElementCount: Int { 5 }
  func minimumDecodeSize(sourceWidth: Int, sourceHeight: Int) -> (width: Int, height: Int) {
    (sourceWidth, sourceHeight)
  }
  func apply(_ image: RGBImage, into output: UnsafeMutableBufferPointer<Float>) throws {
    try ChannelMeans().apply(image, into: output)
  }
  func apply(_ image: RGBImage, into outputs: [UnsafeMutableBufferPointer<Float>]) throws {
    Self.lock.lock()
    Self.applications += 1
    Self.lock.unlock()
    try ChannelMeans().apply(image, into: outputs[0])
    outputs[1][0] = Float(image.width)
    outputs[1][1] = Float(image.height)
  }
}

@Suite("Pipeline with several outputs per image", .serialized)
struct MultiOutputPipelineTests {
  /// 11 JPEGs of varied sizes (one member not a JPEG) in a flat tar.
  func makeTar(_ directory: URL) throws -> (URL, [[UInt8]]) {
    let images = (1...11).map {
      $0 == 4
        ? Array("not a JPEG".utf8)
        : Fixtures.jpeg(width: 30 + 3 * $0, height: 50 - 2 * $0, seed: UInt32($0))
    }
    let tar = directory.appendingPathComponent("val.tar")
    try Fixtures.writeTar(at: tar, members: images.enumerated().map { (valName($0 + 1), $1) })
    return (tar, images)
  }

  func truth() -> GroundTruth {
    GroundTruth(
      labels: Dictionary(uniqueKeysWithValues: (1...11).map { (GroundTruth.validationKey($0), 0) }),
      source: "fixture")
  }

  @Test("each image is decoded once; every output lands in its own tensor, skips compacted")
  func decodedOnce() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("multi-output")
    defer { try? FileManager.default.removeItem(at: directory) }
    let (tar, images) = try makeTar(directory)
    CountingPair.applications = 0
    let pipeline = try Pipeline(
      source: try DataSource(paths: [tar.path]), classes: try ClassIndex.imageNet1k(),
      groundTruth: truth(), batchSize: 4, options: .init(workers: 3),
      transformFactory: { CountingPair() })
    #expect(pipeline.elementCounts == [5, 2])
    var means = [[Float]]()
    var sizes = [[Float]]()
    while let batch = try pipeline.next() {
      #expect(batch.tensors.count == 2)
      #expect(batch.tensors[0].count == 4 * 5 && batch.tensors[1].count == 4 * 2)
      #expect(batch.tensor.baseAddress == batch.tensors[0].baseAddress)
      for row in 0..<batch.count {
        means.append(Array(batch.tensors[0][(row * 5)..<((row + 1) * 5)]))
        sizes.append(Array(batch.tensors[1][(row * 2)..<((row + 1) * 2)]))
      }
      // Padding rows of a short batch are zero in every output.
      #expect(batch.tensors[1][(batch.count * 2)...].allSatisfy { $0 == 0 })
    }
    let summary = pipeline.summary
    let valid = images.enumerated().filter { $0.offset != 3 }.map(\.element)
    #expect(summary.skipped == 1)
    #expect(summary.decodedImages == 10)
    #expect(CountingPair.applications == 10)
    #expect(means == (try valid.map(ChannelMeans.expectedRow)))
    #expect(sizes == (try valid.map { Array(try ChannelMeans.expectedRow($0)[0..<2]) }))
    // The whole archive was read: the byte count reaches the file size.
    let size = try FileManager.default.attributesOfItem(atPath: tar.path)[.size] as? Int
    #expect(summary.totalBytes == size)
    #expect(summary.bytesRead == size)
  }

  @Test("PreprocessorSet outputs are bit-identical to lone Preprocessors (shared and own geometry)")
  func preprocessorSetMatchesLonePreprocessors() throws {
    var nv12 = PreprocessConfig(resizeSize: 36, cropSize: 32)
    try nv12.apply(key: "color", value: "nv12-full")
    nv12.mean = [127, 127, 127]
    nv12.scale = [0.5, 0.25, 0.125]
    var bgrNHWC = PreprocessConfig(resizeSize: 36, cropSize: 32)
    try bgrNHWC.apply(key: "color", value: "bgr")
    bgrNHWC.layout = .nhwc
    let configs = [
      PreprocessConfig(resizeSize: 36, cropSize: 32), nv12, bgrNHWC,
      PreprocessConfig(
        geometry: .letterbox, cropSize: 32, interpolation: .cvLinear, chroma: .nv12Video),
      PreprocessConfig(cropSize: 32, cropPct: 0.875, interpolation: .pillowBicubic),
    ]
    let set = try PreprocessorSet(configs: configs)
    #expect(set.outputElementCounts == Array(repeating: 3 * 32 * 32, count: configs.count))
    for seed in 1...4 {
      let image = PreprocessFixtures.image(
        width: 37 + 9 * seed, height: 61 - 5 * seed, seed: UInt64(seed))
      let pointers = configs.map { config in
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(
          capacity: 3 * config.cropSize * config.cropSize)
        buffer.initialize(repeating: .nan)
        return buffer
      }
      defer { for pointer in pointers { pointer.deallocate() } }
      try set.apply(image, into: pointers)
      let outputs = pointers.map { Array($0) }
      for (k, config) in configs.enumerated() {
        var expected = [Float](repeating: 0, count: outputs[k].count)
        try expected.withUnsafeMutableBufferPointer {
          try Preprocessor(config: config).apply(image, into: $0)
        }
        #expect(outputs[k] == expected, "output \(k), image \(seed)")
      }
      // The single-output conformance writes the first output.
      var first = [Float](repeating: 0, count: outputs[0].count)
      try first.withUnsafeMutableBufferPointer { try set.apply(image, into: $0) }
      #expect(first == outputs[0])
    }
  }
}
