import CTurboJPEG
import Foundation
import TestSupport
import Testing

@testable import Dataset

/// Decodes with our decoder and with Pillow (independent reference) and compares every byte.
private func compareWithPillow(_ jpegs: [[UInt8]]) throws -> [(
  ours: RGBImage, pillow: [UInt8], mode: String
)] {
  let directory = try TestEnvironment.makeTemporaryDirectory("decode")
  defer { try? FileManager.default.removeItem(at: directory) }
  var arguments: [String] = []
  for (index, bytes) in jpegs.enumerated() {
    let input = directory.appendingPathComponent("\(index).jpg")
    try Data(bytes).write(to: input)
    arguments += [input.path, directory.appendingPathComponent("\(index).rgb").path]
  }
  let output = try PythonReference.run(
    script: "scripts/reference/pillow_decode.py", arguments: arguments)
  let lines = output.split(separator: "\n")
  let decoder = try JPEGDecoder()
  var results: [(RGBImage, [UInt8], String)] = []
  for (index, bytes) in jpegs.enumerated() {
    var image = RGBImage()
    try bytes.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
    let reference = [UInt8](try Data(contentsOf: directory.appendingPathComponent("\(index).rgb")))
    let fields = lines[index].split(separator: " ")
    #expect(Int(fields[0]) == image.width && Int(fields[1]) == image.height)
    results.append((image, reference, String(fields[2])))
  }
  return results
}

private func maxDifference(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Int {
  zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
}

@Suite("JPEG decoding")
struct DecodeTests {
  @Test(
    "accurate DCT decode is byte-identical to Pillow for colour, gray, CMYK and extreme sizes",
    .requiresPython)
  func matchesPillow() throws {
    let cases: [(String, [UInt8])] = [
      ("rgb 4:2:0 odd size", Fixtures.jpeg(width: 227, height: 171)),
      ("rgb 4:4:4", Fixtures.jpeg(width: 64, height: 48, kind: .rgb(subsampling444: true))),
      ("gray", Fixtures.jpeg(width: 50, height: 33, kind: .gray)),
      ("cmyk", Fixtures.jpeg(width: 40, height: 30, kind: .cmyk)),
      ("1x1", Fixtures.jpeg(width: 1, height: 1)),
      ("4000x20", Fixtures.jpeg(width: 4000, height: 20, seed: 3)),
      ("20x4000", Fixtures.jpeg(width: 20, height: 4000, seed: 4)),
      ("junk before scan (libjpeg warning)", junkBeforeScan(Fixtures.jpeg(width: 33, height: 17))),
    ]
    let results = try compareWithPillow(cases.map(\.1))
    for ((name, _), result) in zip(cases, results) {
      let count = result.ours.width * result.ours.height * 3
      #expect(result.pillow.count == count, "\(name)")
      let diff = maxDifference(result.ours.pixels[0..<count], result.pillow[...])
      #expect(diff == 0, "\(name): max |ours - Pillow| = \(diff)")
    }
    #expect(results[2].mode == "L")
    #expect(results[3].mode == "CMYK")
  }

  @Test(
    "real ILSVRC2012 JPEGs decode byte-identically to Pillow",
    .requiresShared,
    .requiresPython)
  func realImagesMatchPillow() throws {
    let reader = try TarMemberReader(
      path: TestEnvironment.shared("datasets/ilsvrc2012-val-subset-1300.tar").path)
    var jpegs: [[UInt8]] = []
    var buffer: [UInt8] = []
    // Every 50th member: 26 real photos from a real encoder, not from our fixture encoder.
    var index = 0
    while (try reader.nextMember()) != nil {
      if index % 50 == 0 {
        let count = try reader.readMember(into: &buffer)
        jpegs.append(Array(buffer[0..<count]))
      }
      index += 1
    }
    #expect(jpegs.count == 26)
    for (number, result) in try compareWithPillow(jpegs).enumerated() {
      let count = result.ours.width * result.ours.height * 3
      #expect(result.pillow.count == count)
      #expect(result.ours.pixels[0..<count] == result.pillow[...], "image \(number * 50)")
    }
  }

  @Test("fast DCT decodes but changes pixels")
  func fastDCTChangesPixels() throws {
    let bytes = Fixtures.jpeg(width: 128, height: 96, quality: 95)
    var accurate = RGBImage()
    var fast = RGBImage()
    try bytes.withUnsafeBytes {
      try JPEGDecoder().decode($0, into: &accurate)
      try JPEGDecoder(options: .init(fastDCT: true)).decode($0, into: &fast)
    }
    #expect(fast.width == 128 && fast.height == 96)
    #expect(accurate.pixels != fast.pixels)
    // Still the same picture: a noisy q95 pattern measured a mean error of 1.26 levels.
    let total = zip(accurate.pixels, fast.pixels).reduce(0) { $0 + abs(Int($1.0) - Int($1.1)) }
    #expect(Double(total) / Double(accurate.pixels.count) < 3.0)
  }

  @Test("the output buffer is reused and only grows")
  func bufferGrowsOnly() throws {
    let decoder = try JPEGDecoder()
    var image = RGBImage()
    let big = Fixtures.jpeg(width: 100, height: 80)
    let small = Fixtures.jpeg(width: 10, height: 8)
    try big.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
    #expect(image.pixels.count == 100 * 80 * 3)
    try small.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
    #expect(image.width == 10 && image.height == 8)
    #expect(image.pixels.count == 100 * 80 * 3)
    var reference = RGBImage()
    try small.withUnsafeBytes { _ = try JPEGDecoder().decode($0, into: &reference) }
    #expect(image.pixels[0..<240] == reference.pixels[0..<240])
  }

  @Test("fast decode picks the smallest scale that still covers the minimum size")
  func fastDecodeScale() throws {
    // Hand-computed with TJSCALED = ceil(d * num / denom) over TurboJPEG's factors.
    let eighth = JPEGDecoder.scalingFactor(width: 4000, height: 3000, minimum: (400, 300))
    #expect(eighth.num == 1 && eighth.denom == 8)  // 500x375
    let half = JPEGDecoder.scalingFactor(width: 500, height: 375, minimum: (224, 187))
    #expect(JPEGDecoder.scaled(500, half) >= 224 && JPEGDecoder.scaled(375, half) >= 187)
    #expect(JPEGDecoder.scaled(500, half) * JPEGDecoder.scaled(375, half) <= 250 * 188)
    let one = JPEGDecoder.scalingFactor(width: 100, height: 100, minimum: (224, 224))
    #expect(one.num == 1 && one.denom == 1)

    let bytes = Fixtures.jpeg(width: 640, height: 480)
    var image = RGBImage()
    let decoder = try JPEGDecoder(options: .init(fastDecode: true))
    try bytes.withUnsafeBytes {
      _ = try decoder.decode($0, into: &image, minimumSize: { _, _ in (160, 120) })
    }
    #expect(image.width == 160 && image.height == 120)
    try bytes.withUnsafeBytes {
      _ = try decoder.decode($0, into: &image, minimumSize: { _, _ in (161, 120) })
    }
    // 161 > 640/4, so the next factor up (TurboJPEG has 3/8 = 240x180).
    #expect(image.width == 240 && image.height == 180)
  }

  @Test("non-JPEG bytes are rejected naming the detected format")
  func nonJPEG() throws {
    let decoder = try JPEGDecoder()
    var image = RGBImage()
    let cases: [([UInt8], String)] = [
      (Fixtures.pngBytes, "not a JPEG: PNG data"),
      (Array("GIF89a".utf8) + [0, 0, 0], "not a JPEG: GIF data"),
      ([], "not a JPEG: empty data"),
      (
        Array("hello world".utf8),
        "not a JPEG: unknown data starting with bytes 68 65 6c 6c 6f 20 77 6f"
      ),
    ]
    for (bytes, reason) in cases {
      #expect(throws: DecodeFailure(reason: reason)) {
        try bytes.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
      }
    }
  }

  @Test("truncated and corrupt JPEGs fail with a reason; the decoder stays usable")
  func damaged() throws {
    let decoder = try JPEGDecoder()
    var image = RGBImage()
    let good = Fixtures.jpeg(width: 64, height: 64)
    let truncated = Array(good[0..<(good.count / 2)])
    do {
      try truncated.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
      Issue.record("truncated JPEG decoded")
    } catch let failure as DecodeFailure {
      #expect(failure.reason.hasPrefix("truncated JPEG"), "\(failure.reason)")
    }
    let headerOnly = Array(good[0..<20])
    do {
      try headerOnly.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
      Issue.record("header-only JPEG decoded")
    } catch let failure as DecodeFailure {
      #expect(failure.reason.hasPrefix("corrupt JPEG"), "\(failure.reason)")
    }
    var garbage = good
    for i in 4..<min(400, garbage.count) { garbage[i] = UInt8(truncatingIfNeeded: i * 31) }
    do {
      try garbage.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
      Issue.record("garbage after SOI decoded")
    } catch let failure as DecodeFailure {
      #expect(failure.reason.hasPrefix("corrupt JPEG"), "\(failure.reason)")
    }
    try good.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
    #expect(image.width == 64 && image.height == 64)
    // Regression: a small image cut inside its Huffman tables used to poison the TurboJPEG
    // handle so the next good image failed with "Bogus Huffman table definition".
    let tiny = Fixtures.jpeg(width: 16, height: 12)
    let cutTables = Array(tiny[0..<(tiny.count / 2)])
    #expect(throws: DecodeFailure.self) {
      try cutTables.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
    }
    try tiny.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
    #expect(image.width == 16 && image.height == 12)
  }

  @Test("a libjpeg warning keeps the image and reports the warning")
  func warningKeepsImage() throws {
    let good = Fixtures.jpeg(width: 48, height: 32)
    let damaged = junkBeforeScan(good)
    #expect(damaged.count == good.count + 2)
    let decoder = try JPEGDecoder()
    var clean = RGBImage()
    var image = RGBImage()
    try good.withUnsafeBytes { _ = try decoder.decode($0, into: &clean) }
    let warning = try damaged.withUnsafeBytes { try decoder.decode($0, into: &image) }
    #expect(warning == "Corrupt JPEG data: 2 extraneous bytes before marker 0xda")
    #expect(image.pixels == clean.pixels)
  }

  @Test("images above the pixel budget fail before allocation")
  func pixelBudget() throws {
    let decoder = try JPEGDecoder(options: .init(maxPixels: 1000))
    var image = RGBImage()
    let bytes = Fixtures.jpeg(width: 40, height: 30)
    #expect(throws: DecodeFailure(reason: "image too large: 40x30 exceeds 1000 pixels")) {
      try bytes.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
    }
    #expect(image.pixels.isEmpty)
  }
}
