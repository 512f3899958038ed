import Foundation
import TestSupport
import Testing

@testable import Dataset

/// Golden comparisons against Pillow, OpenCV and numpy run by
/// `scripts/reference/preprocess_reference.py` on the same raw RGB inputs (no JPEG involved).
@Suite(
  "Preprocess matches Pillow/OpenCV references",
  .requiresPython)
struct PreprocessReferenceTests {
  /// (source width, height) → (target width, height): up- and downscales, odd sizes, identity,
  /// exact 2× and 3×, extreme aspect ratios, a single pixel.
  static let resizeCases: [(Int, Int, Int, Int)] = [
    (227, 227, 256, 256), (500, 375, 341, 256), (375, 500, 256, 341), (1, 1, 256, 256),
    (4000, 20, 300, 7), (20, 4000, 7, 300), (33, 57, 224, 224), (224, 224, 224, 224),
    (448, 448, 224, 224), (639, 480, 213, 160), (1000, 7, 100, 3), (7, 1000, 3, 100),
    (301, 199, 257, 211), (64, 48, 333, 250),
    // Either side of Pillow 13's vertical-first boundary, and mixed up/down scales.
    (150, 190, 100, 100), (150, 210, 100, 100), (200, 290, 100, 100), (200, 310, 100, 100),
    (144, 155, 237, 148), (149, 277, 58, 389), (375, 500, 1, 1),
  ]

  static let methods: [PreprocessConfig.Interpolation] = PreprocessConfig.Interpolation.allCases

  @Test("whole-image resize agrees with the library it names", arguments: methods)
  func resize(method: PreprocessConfig.Interpolation) throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("preprocess-resize")
    defer { try? FileManager.default.removeItem(at: directory) }
    var jobs: [[String: Any]] = []
    var images: [RGBImage] = []
    for (index, (width, height, outWidth, outHeight)) in Self.resizeCases.enumerated() {
      let image = PreprocessFixtures.image(width: width, height: height, seed: UInt64(index))
      images.append(image)
      let input = directory.appendingPathComponent("in\(index).npy")
      try PreprocessFixtures.save(image, to: input)
      jobs.append([
        "kind": "resize", "input": input.path,
        "output": directory.appendingPathComponent("out\(index).npy").path,
        "method": method.rawValue, "width": outWidth, "height": outHeight,
      ])
    }
    try PreprocessFixtures.runReference(jobs: jobs, in: directory)
    var total = PreprocessFixtures.Agreement([], [])
    for (index, (width, height, outWidth, outHeight)) in Self.resizeCases.enumerated() {
      let expected = try NumpyFile.read(directory.appendingPathComponent("out\(index).npy"))
      #expect(expected.shape == [outHeight, outWidth, 3])
      let actual = try Resampler.resize(
        images[index], width: outWidth, height: outHeight, interpolation: method)
      let agreement = PreprocessFixtures.Agreement(
        actual.pixels, try expected.values(as: UInt8.self))
      print("resize \(method.rawValue) \(width)×\(height) → \(outWidth)×\(outHeight): \(agreement)")
      #expect(
        agreement.withinOneFraction >= 0.99 && agreement.maxDiff <= 1,
        "\(method.rawValue) \(width)×\(height) → \(outWidth)×\(outHeight): \(agreement)")
      // Pillow's arithmetic is plain integer C, identical on every CPU: hold it to bit-exact.
      if method != .cvLinear && method != .cvArea {
        #expect(agreement.maxDiff == 0, "\(method.rawValue) \(width)×\(height): \(agreement)")
      }
      total.count += agreement.count
      total.exact += agreement.exact
      total.withinOne += agreement.withinOne
      total.maxDiff = max(total.maxDiff, agreement.maxDiff)
    }
    print("resize \(method.rawValue) overall: \(total)")
  }

  /// Each preset and a few knob variations, on sizes that exercise the geometry's corners.
  static let pipelineSizes: [(Int, Int)] = [
    (500, 375), (375, 500), (1, 1), (4000, 20), (20, 4000), (227, 227), (224, 224),
    (259, 256), (256, 261), (97, 61), (640, 427),
  ]

  static let pipelineConfigs: [(String, PreprocessConfig)] = {
    var list = PreprocessPreset.allCases.map { ($0.rawValue, $0.config) }
    func variant(_ name: String, _ preset: PreprocessPreset, _ overrides: [String: String]) {
      // Overrides here are static and valid; a failure shows up as a missing case name.
      if let config = try? PreprocessConfig(preset: preset.rawValue, overrides: overrides) {
        list.append((name, config))
      }
    }
    variant("torchvision-bgr-nhwc", .torchvision, ["color": "bgr", "layout": "nhwc"])
    variant("torchvision-floor", .torchvision, ["crop-rounding": "floor"])
    variant("nearest", .torchvision, ["interpolation": "nearest"])
    variant("cv-area", .rdk, ["interpolation": "cv-area", "color": "rgb"])
    variant("rdk-video-yuv444", .rdk, ["color": "nv12-video->yuv444"])
    variant("rdk-video-rgb", .rdk, ["color": "nv12-video->bgr"])
    variant("rdk-full-yuv444", .rdk, ["color": "nv12-full->yuv444"])
    variant("letterbox-bicubic", .rdkBoard, ["interpolation": "pillow-bicubic", "color": "rgb"])
    variant("timm-0.95", .timm, ["crop-pct": "0.95"])
    variant("resize-320-crop-288", .torchvision, ["resize": "320", "crop": "288"])
    return list
  }()

  @Test("full pipeline agrees with the reference recipe", arguments: pipelineConfigs.map(\.0))
  func pipeline(name: String) throws {
    let config = try #require(Self.pipelineConfigs.first { $0.0 == name }?.1)
    let directory = try TestEnvironment.makeTemporaryDirectory("preprocess-pipeline")
    defer { try? FileManager.default.removeItem(at: directory) }
    var jobs: [[String: Any]] = []
    var images: [RGBImage] = []
    for (index, (width, height)) in Self.pipelineSizes.enumerated() {
      let image = PreprocessFixtures.image(width: width, height: height, seed: UInt64(100 + index))
      images.append(image)
      let input = directory.appendingPathComponent("in\(index).npy")
      try PreprocessFixtures.save(image, to: input)
      jobs.append([
        "kind": "pipeline", "input": input.path, "config": try PreprocessFixtures.json(config),
        "output": directory.appendingPathComponent("tensor\(index).npy").path,
        "pixels": directory.appendingPathComponent("pixels\(index).npy").path,
      ])
    }
    try PreprocessFixtures.runReference(jobs: jobs, in: directory)
    let preprocessor = try Preprocessor(config: config)
    var tensor = [Float](repeating: .nan, count: preprocessor.outputElementCount)
    let side = config.cropSize
    for (index, (width, height)) in Self.pipelineSizes.enumerated() {
      let label = "\(name) \(width)×\(height)"
      let expectedPixels = try NumpyFile.read(
        directory.appendingPathComponent("pixels\(index).npy"))
      let expectedTensor = try NumpyFile.read(
        directory.appendingPathComponent("tensor\(index).npy"))
      #expect(expectedPixels.shape == [side, side, 3], "\(label)")
      let pixels = try preprocessor.pixels(for: images[index])
      let reference = try expectedPixels.values(as: UInt8.self)
      let agreement = PreprocessFixtures.Agreement(pixels.pixels, reference)
      print("pipeline \(label): \(agreement)")
      #expect(
        agreement.withinOneFraction >= 0.99 && agreement.maxDiff <= 1, "\(label): \(agreement)")

      try tensor.withUnsafeMutableBufferPointer { try preprocessor.apply(images[index], into: $0) }
      let expectedValues = try expectedTensor.values(as: Float.self)
      #expect(expectedValues.count == tensor.count)
      #expect(
        expectedTensor.shape == (config.layout == .nchw ? [3, side, side] : [side, side, 3]))
      // Normalisation and layout are checked where the 8-bit pixels agree, so a resampling
      // difference of one grey level is not counted twice.
      var checked = 0
      var worst: Float = 0
      for i in 0..<min(tensor.count, expectedValues.count) {
        let (pixel, channel) =
          config.layout == .nchw ? (i % (side * side), i / (side * side)) : (i / 3, i % 3)
        guard pixels.pixels[pixel * 3 + channel] == reference[pixel * 3 + channel] else { continue }
        checked += 1
        worst = max(worst, abs(tensor[i] - expectedValues[i]) / max(1, abs(expectedValues[i])))
      }
      #expect(checked >= tensor.count * 99 / 100, "\(label): only \(checked) values comparable")
      #expect(worst <= 1e-6, "\(label): normalisation off by \(worst) (relative)")
    }
  }

  @Test("torchvision preset equals ToTensor + Normalize computed in float32")
  func torchvisionFloat32() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("preprocess-torchvision")
    defer { try? FileManager.default.removeItem(at: directory) }
    let image = PreprocessFixtures.image(width: 500, height: 333, seed: 7)
    let input = directory.appendingPathComponent("in.npy")
    let output = directory.appendingPathComponent("out.npy")
    try PreprocessFixtures.save(image, to: input)
    try PreprocessFixtures.runReference(
      jobs: [["kind": "torchvision", "input": input.path, "output": output.path]], in: directory)
    let expected = try NumpyFile.read(output).values(as: Float.self)
    let preprocessor = try Preprocessor(preset: .torchvision)
    var tensor = [Float](repeating: .nan, count: preprocessor.outputElementCount)
    try tensor.withUnsafeMutableBufferPointer { try preprocessor.apply(image, into: $0) }
    let worst = zip(tensor, expected).map { abs($0 - $1) }.max() ?? .infinity
    print("torchvision float32 recipe: max abs diff \(worst)")
    // x / 255 - mean / std in float32 vs (x - 255 mean) / (255 std) rounded once: a few ulps.
    #expect(worst <= 2e-6)
  }

  @Test("NV12 round trips agree with OpenCV (video range) and numpy (full range)")
  func nv12() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("preprocess-nv12")
    defer { try? FileManager.default.removeItem(at: directory) }
    let cases: [(String, String, PreprocessConfig.ChromaPath, PreprocessConfig.Channels)] = [
      ("video", "rgb", .nv12Video, .rgb), ("video", "yuv444", .nv12Video, .yuv444),
      ("full", "rgb", .nv12Full, .rgb), ("full", "yuv444", .nv12Full, .yuv444),
    ]
    let image = PreprocessFixtures.image(width: 224, height: 224, seed: 11)
    let input = directory.appendingPathComponent("in.npy")
    try PreprocessFixtures.save(image, to: input)
    let jobs: [[String: Any]] = cases.enumerated().map { index, entry in
      [
        "kind": "nv12", "input": input.path, "range": entry.0, "to": entry.1,
        "output": directory.appendingPathComponent("nv12_\(index).npy").path,
      ]
    }
    try PreprocessFixtures.runReference(jobs: jobs, in: directory)
    for (index, entry) in cases.enumerated() {
      // A 224 crop of a 224 image with nearest is the identity, isolating the colour stage.
      let config = PreprocessConfig(
        resizeSize: 224, interpolation: .nearest, chroma: entry.2, channels: entry.3,
        mean: [0, 0, 0],
        std: [1, 1, 1])
      let preprocessor = try Preprocessor(config: config)
      let actual = try preprocessor.pixels(for: image)
      let expected = try NumpyFile.read(directory.appendingPathComponent("nv12_\(index).npy"))
      let agreement = PreprocessFixtures.Agreement(
        actual.pixels, try expected.values(as: UInt8.self))
      print("nv12 \(entry.0) → \(entry.1): \(agreement)")
      #expect(agreement.maxDiff <= 1, "nv12 \(entry.0) → \(entry.1): \(agreement)")
      #expect(agreement.exactFraction >= 0.99, "nv12 \(entry.0) → \(entry.1): \(agreement)")
    }
  }
}

/// The same comparison on real photographs: the shared ILSVRC2012 subset, decoded by Pillow
/// so that only preprocessing is compared.
@Suite(
  "Preprocess matches the references on real ILSVRC2012 images",
  .requiresShared,
  .requiresPython)
struct PreprocessRealImageTests {
  @Test("first 40 images through every preset", arguments: PreprocessPreset.allCases)
  func realImages(preset: PreprocessPreset) throws {
    let directory = try TestEnvironment.makeTemporaryDirectory("preprocess-real")
    defer { try? FileManager.default.removeItem(at: directory) }
    let tar = TestEnvironment.shared("datasets/ilsvrc2012-val-subset-1300.tar")
    let count = 40
    try PythonReference.run(
      code: """
        import io, os, sys, tarfile, numpy as np
        from PIL import Image
        with tarfile.open(sys.argv[1]) as t:
            members = [m for m in t.getmembers() if m.isfile()][: int(sys.argv[3])]
            for i, m in enumerate(members):
                rgb = np.asarray(Image.open(io.BytesIO(t.extractfile(m).read())).convert('RGB'))
                np.save(os.path.join(sys.argv[2], f'in{i}.npy'), rgb)
        """, arguments: [tar.path, directory.path, String(count)])
    let config = preset.config
    let jobs: [[String: Any]] = try (0..<count).map { index in
      [
        "kind": "pipeline", "config": try PreprocessFixtures.json(config),
        "input": directory.appendingPathComponent("in\(index).npy").path,
        "output": directory.appendingPathComponent("tensor\(index).npy").path,
        "pixels": directory.appendingPathComponent("pixels\(index).npy").path,
      ]
    }
    try PreprocessFixtures.runReference(jobs: jobs, in: directory)
    let preprocessor = try Preprocessor(config: config)
    var total = PreprocessFixtures.Agreement([], [])
    for index in 0..<count {
      let input = try NumpyFile.read(directory.appendingPathComponent("in\(index).npy"))
      let image = RGBImage(
        width: input.shape[1], height: input.shape[0], pixels: try input.values(as: UInt8.self))
      let expected = try NumpyFile.read(directory.appendingPathComponent("pixels\(index).npy"))
      let agreement = PreprocessFixtures.Agreement(
        try preprocessor.pixels(for: image).pixels, try expected.values(as: UInt8.self))
      #expect(agreement.maxDiff <= 1, "\(preset.rawValue) image \(index): \(agreement)")
      total.count += agreement.count
      total.exact += agreement.exact
      total.withinOne += agreement.withinOne
      total.maxDiff = max(total.maxDiff, agreement.maxDiff)
    }
    print("real images \(preset.rawValue): \(total)")
    #expect(total.withinOneFraction >= 0.99)
  }
}
