import Foundation
import Testing

@testable import Dataset

@Suite("Preprocess configuration, geometry and hand-computed values")
struct PreprocessConfigTests {
  @Test("every preset validates and round-trips through JSON", arguments: PreprocessPreset.allCases)
  func presets(preset: PreprocessPreset) throws {
    let config = try PreprocessConfig(preset: preset.rawValue)
    #expect(config == preset.config)
    let decoded = try JSONDecoder().decode(
      PreprocessConfig.self, from: JSONEncoder().encode(config))
    #expect(decoded == config)
    _ = try Preprocessor(config: config)
  }

  @Test("overrides parse as on the command line")
  func overrides() throws {
    let config = try PreprocessConfig(
      preset: "rdk",
      overrides: [
        "mean": "1,2,3", "scale": "0.5", "resize": "300", "crop": "256",
        "interpolation": "pillow-bicubic", "color": "nv12-video->yuv444", "layout": "nhwc",
        "letterbox-pad": "0", "crop-rounding": "half-even",
      ])
    #expect(config.mean == [1, 2, 3])
    #expect(config.scale == [0.5, 0.5, 0.5])
    #expect(config.effectiveScale == [0.5, 0.5, 0.5])
    #expect(config.resizeSize == 300 && config.cropSize == 256)
    #expect(config.interpolation == .pillowBicubic)
    #expect(config.chroma == .nv12Video && config.channels == .yuv444)
    #expect(config.layout == .nhwc && config.letterboxPad == 0)
    let timm = try PreprocessConfig(preset: "timm", overrides: ["crop-pct": "0.95"])
    #expect(timm.effectiveResizeSize == 235)  // floor(224 / 0.95) = floor(235.79)
    #expect(try PreprocessConfig(preset: "timm").effectiveResizeSize == 256)  // 224 / 0.875
    #expect(
      try PreprocessConfig(preset: "timm", overrides: ["crop-pct": "0.9"]).effectiveResizeSize
        == 248)
    let plain = try PreprocessConfig(preset: "rdk", overrides: ["color": "bgr", "std": "2"])
    #expect(plain.chroma == .none && plain.channels == .bgr)
    #expect(plain.scale == nil && plain.effectiveScale == [0.5, 0.5, 0.5])
    #expect(
      try PreprocessConfig(preset: "torchvision", overrides: ["color": "nv12-full"]).channels
        == .rgb)
  }

  @Test(
    "invalid settings are rejected with the knob named",
    arguments: [
      (["std": "1,0,1"], "std"), (["crop": "300"], "larger than the resize"),
      (["crop": "-1"], "crop size"), (["resize": "0", "crop": "0"], "crop size"),
      (["mean": "1,2"], "--mean"), (["interpolation": "lanczos"], "pillow-bilinear"),
      (["color": "yuv444"], "chroma path"), (["crop-pct": "1.5"], "crop-pct"),
      (["color": "nv12-full", "crop": "223"], "even"), (["letterbox-pad": "300"], "letterbox"),
      (["colour": "rgb"], "unknown preprocessing option"), (["resize": "abc"], "integer"),
      (["scale": "0,1,1"], "scale"), (["geometry": "stretch"], "resize-crop"),
    ])
  func invalid(overrides: [String: String], fragment: String) throws {
    let error = #expect(throws: PreprocessConfigError.self) {
      try PreprocessConfig(preset: "torchvision", overrides: overrides)
    }
    #expect(error?.message.contains(fragment) == true, "\(String(describing: error))")
  }

  @Test("unknown preset names list the known ones")
  func unknownPreset() {
    let error = #expect(throws: PreprocessConfigError.self) {
      try PreprocessConfig(preset: "resnet")
    }
    #expect(error?.message.contains("efficientnet-lite") == true)
  }

  @Test("crop offsets: torchvision rounds half to even, floor truncates")
  func cropOffsets() {
    // (259 - 224) / 2 = 17.5 → 18 (even); (257 - 224) / 2 = 16.5 → 16; (261 - 224) / 2 = 18.5 → 18.
    #expect(ResizePlan.cropOffset(35, rounding: .halfToEven) == 18)
    #expect(ResizePlan.cropOffset(33, rounding: .halfToEven) == 16)
    #expect(ResizePlan.cropOffset(37, rounding: .halfToEven) == 18)
    #expect(ResizePlan.cropOffset(35, rounding: .floor) == 17)
    #expect(ResizePlan.cropOffset(32, rounding: .floor) == 16)
  }

  @Test("resize sizes follow torchvision's int(size * long / short)")
  func resizeSizes() throws {
    let config = PreprocessConfig()
    let landscape = try ResizePlan(config: config, width: 500, height: 375)
    #expect((landscape.resizedWidth, landscape.resizedHeight) == (341, 256))  // 341.33
    #expect((landscape.cropX, landscape.cropY) == (58, 16))  // round(58.5) = 58 (even)
    let portrait = try ResizePlan(config: config, width: 333, height: 500)
    #expect((portrait.resizedWidth, portrait.resizedHeight) == (256, 384))  // 384.38
    let tiny = try ResizePlan(config: config, width: 1, height: 1)
    #expect((tiny.resizedWidth, tiny.resizedHeight) == (256, 256))
    let thin = try ResizePlan(config: config, width: 4000, height: 20)
    #expect((thin.resizedWidth, thin.resizedHeight) == (51200, 256))
    // Only the kept columns get coefficients, not all 51200.
    #expect(thin.horizontal.count == 224 && thin.vertical.count == 224)
  }

  @Test("letterbox centres the image and pads the rest")
  func letterbox() throws {
    var config = PreprocessPreset.rdkBoard.config
    config.chroma = .none
    config.letterboxPad = 200
    let plan = try ResizePlan(config: config, width: 400, height: 300)
    // r = 224 / 400; 300 r = 168; margin 56 → top = round(28 - 0.1) = 28.
    #expect((plan.resizedWidth, plan.resizedHeight, plan.placeX, plan.placeY) == (224, 168, 0, 28))
    #expect(!plan.coversOutput)
    let preprocessor = try Preprocessor(config: config)
    let image = RGBImage(
      width: 400, height: 300, pixels: [UInt8](repeating: 10, count: 400 * 300 * 3))
    let pixels = try preprocessor.pixels(for: image).pixels
    #expect(pixels[0] == 200 && pixels[(27 * 224) * 3] == 200)  // border rows
    #expect(pixels[(28 * 224) * 3] == 10 && pixels[(195 * 224 + 223) * 3 + 2] == 10)
    #expect(pixels[(196 * 224) * 3] == 200)  // 28 + 168 = 196 is padding again
  }

  @Test("a flat image normalises to (v - mean) / std everywhere, in both layouts")
  func flatImage() throws {
    let image = RGBImage(
      width: 3, height: 2,
      pixels: [UInt8](repeating: 0, count: 18).enumerated().map {
        [255, 0, 128][$0.offset % 3]
      })
    for layout in PreprocessConfig.Layout.allCases {
      var config = PreprocessConfig()
      config.layout = layout
      let preprocessor = try Preprocessor(config: config)
      var output = [Float](repeating: .nan, count: preprocessor.outputElementCount)
      try output.withUnsafeMutableBufferPointer { try preprocessor.apply(image, into: $0) }
      let expected: [Float] = [
        Float((255 - 123.675) / 58.395), Float((0 - 116.28) / 57.12),
        Float((128 - 103.53) / 57.375),
      ]
      for (index, value) in output.enumerated() {
        let channel = layout == .nchw ? index / (224 * 224) : index % 3
        #expect(value == expected[channel], "\(layout) index \(index)")
        if value != expected[channel] { break }
      }
    }
    // BGR swaps the planes; scale replaces std.
    let bgr = try Preprocessor(
      config: PreprocessConfig(channels: .bgr, mean: [0, 0, 0], scale: [1, 2, 4]))
    var output = [Float](repeating: .nan, count: bgr.outputElementCount)
    try output.withUnsafeMutableBufferPointer { try bgr.apply(image, into: $0) }
    #expect(output[0] == 128 && output[224 * 224] == 0 && output[2 * 224 * 224] == 1020)
  }

  @Test("bad images throw instead of crashing; scratch reuse does not leak between sizes")
  func robustness() throws {
    let preprocessor = try Preprocessor(preset: .torchvision)
    var output = [Float](repeating: 0, count: preprocessor.outputElementCount)
    #expect(throws: PreprocessError.self) {
      try output.withUnsafeMutableBufferPointer {
        try preprocessor.apply(RGBImage(width: 0, height: 5), into: $0)
      }
    }
    #expect(throws: PreprocessError.self) {
      try output.withUnsafeMutableBufferPointer {
        try preprocessor.apply(RGBImage(width: 4, height: 4, pixels: [1, 2, 3]), into: $0)
      }
    }
    #expect(throws: PreprocessError.self) {
      try output.withUnsafeMutableBufferPointer {
        try preprocessor.apply(
          RGBImage(width: 4, height: 4, pixels: [UInt8](repeating: 0, count: 48)),
          into: UnsafeMutableBufferPointer(rebasing: $0[0..<10]))
      }
    }
    // 1×20000 would need a 5,120,000-pixel-tall resize: refused, not attempted.
    let thin = #expect(throws: PreprocessError.self) {
      try output.withUnsafeMutableBufferPointer {
        try preprocessor.apply(
          RGBImage(width: 1, height: 20000, pixels: [UInt8](repeating: 0, count: 60000)), into: $0)
      }
    }
    #expect(thin?.description.contains("1×20000") == true)
    // One instance through many sizes equals fresh instances per image.
    let sizes = [(500, 375), (20, 4000), (224, 224), (1, 1), (640, 480), (500, 375)]
    for (index, (width, height)) in sizes.enumerated() {
      let image = PreprocessFixtures.image(width: width, height: height, seed: UInt64(index))
      let reused = try preprocessor.pixels(for: image)
      let fresh = try Preprocessor(preset: .torchvision).pixels(for: image)
      #expect(reused.pixels == fresh.pixels, "\(width)×\(height)")
    }
  }

  @Test("minimum decode size keeps every resize a downscale")
  func minimumDecodeSize() throws {
    let torchvision = try Preprocessor(preset: .torchvision)
    #expect(torchvision.minimumDecodeSize(sourceWidth: 500, sourceHeight: 375) == (342, 256))
    #expect(torchvision.minimumDecodeSize(sourceWidth: 200, sourceHeight: 100) == (200, 100))
    let letterbox = try Preprocessor(preset: .rdkBoard)
    #expect(letterbox.minimumDecodeSize(sourceWidth: 800, sourceHeight: 400) == (224, 112))
    let tflite = try Preprocessor(preset: .tflite)
    // 224 / 0.875 = 256 on the shorter side.
    #expect(tflite.minimumDecodeSize(sourceWidth: 1024, sourceHeight: 512) == (512, 256))
  }
}
