import Foundation
import TestSupport

@testable import Dataset

/// A deliberately simple transform: width, height and per-channel means of the decoded image.
/// It is enough to tell images apart and to check that each row lands in the right place.
final class ChannelMeans: ImageTransform {
  var outputElementCount: Int { 5 }
  func minimumDecodeSize(sourceWidth: Int, sourceHeight: Int) -> (width: Int, height: Int) {
    (sourceWidth, sourceHeight)
  }
  func apply(_ image: RGBImage, into output: UnsafeMutableBufferPointer<Float>) throws {
    var sums = [0.0, 0.0, 0.0]
    let count = image.width * image.height
    image.pixels.withUnsafeBufferPointer { pixels in
      for index in 0..<count {
        for channel in 0..<3 { sums[channel] += Double(pixels[index * 3 + channel]) }
      }
    }
    output[0] = Float(image.width)
    output[1] = Float(image.height)
    for channel in 0..<3 { output[2 + channel] = Float(sums[channel] / Double(max(1, count))) }
  }

  /// The row this transform produces for `bytes`, computed without the pipeline.
  static func expectedRow(_ bytes: [UInt8]) throws -> [Float] {
    var image = RGBImage()
    try bytes.withUnsafeBytes { _ = try JPEGDecoder().decode($0, into: &image) }
    var row = [Float](repeating: 0, count: 5)
    try row.withUnsafeMutableBufferPointer { try ChannelMeans().apply(image, into: $0) }
    return row
  }
}

/// Everything a pipeline run produced, copied out of the reused batch buffers.
struct RunResult {
  var keys: [String] = []
  var labels: [Int] = []
  var rows: [[Float]] = []
  var skipped: [SkippedSample] = []
  var warnings: [SampleWarning] = []
  var batchCounts: [Int] = []
  var summary: PipelineSummary?
}

func run(
  _ source: DataSource, groundTruth: GroundTruth? = nil, classes: ClassIndex? = nil,
  batchSize: Int = 4, options: Pipeline.Options = .init(workers: 2)
) throws -> RunResult {
  let pipeline = try Pipeline(
    source: source, classes: try classes ?? ClassIndex.imageNet1k(), groundTruth: groundTruth,
    batchSize: batchSize, options: options, transformFactory: { ChannelMeans() })
  var result = RunResult()
  while let batch = try pipeline.next() {
    result.keys += batch.keys
    result.labels += batch.labels
    for row in 0..<batch.count {
      result.rows.append(Array(batch.tensor[(row * 5)..<((row + 1) * 5)]))
    }
    // Rows past the valid ones are zero so fixed-batch engines see no stale data.
    if batch.tensor[(batch.count * 5)...].contains(where: { $0 != 0 }) {
      result.batchCounts.append(-1)
    } else {
      result.batchCounts.append(batch.count)
    }
    result.skipped += batch.skipped
    result.warnings += batch.warnings
  }
  result.summary = pipeline.summary
  return result
}

/// Synsets used by fixtures: class indices 0, 1, 2 and 999 of ImageNet-1k.
let fixtureSynsets = ["n01440764", "n01443537", "n01484850", "n15075141"]
let fixtureIndices = [0, 1, 2, 999]

func valName(_ number: Int) -> String { GroundTruth.validationKey(number) + ".JPEG" }

/// Five distinct JPEGs of different sizes.
let fixtureImages: [[UInt8]] = (0..<5).map {
  Fixtures.jpeg(width: 16 + 8 * $0, height: 12 + 4 * $0, seed: UInt32(10 + $0))
}

/// Inserts two junk bytes before the start-of-scan marker: libjpeg decodes the image unchanged
/// but warns "Corrupt JPEG data: 2 extraneous bytes before marker 0xda" (Pillow ignores it).
func junkBeforeScan(_ jpeg: [UInt8]) -> [UInt8] {
  guard let sos = (0..<(jpeg.count - 1)).first(where: { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xDA })
  else { return jpeg }
  return Array(jpeg[..<sos]) + [0, 0] + Array(jpeg[sos...])
}
