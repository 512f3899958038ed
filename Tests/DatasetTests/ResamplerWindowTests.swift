import Foundation
import Testing

@testable import Dataset

/// The fixed-width window kernels against the per-length loops that the Pillow golden tests
/// (`PreprocessReferenceTests`) hold bit-exact to Pillow: the two must agree on every byte, for
/// every window width, both pass orders, crops that start mid-image and tiny sources whose
/// window must slide at the edge.
@Suite("Resampler windows")
struct ResamplerWindowTests {
  /// Source and target sizes covering window widths 1–6 and wider (per-length fallback), the
  /// vertical-first order and a 1-pixel axis.
  static let cases: [(Int, Int, Int, Int)] = [
    (227, 227, 256, 256), (500, 375, 341, 256), (375, 500, 256, 341), (333, 500, 256, 384),
    (640, 427, 383, 256), (150, 210, 100, 100), (200, 310, 100, 100), (3, 2, 256, 256),
    (2, 2, 1, 1), (5, 900, 4, 300), (800, 600, 300, 225), (1, 7, 9, 3), (57, 33, 28, 16),
    (256, 256, 224, 224), (224, 224, 224, 224), (1024, 768, 341, 256),
  ]

  @Test(
    "window kernels equal the per-length loops",
    arguments: [PreprocessConfig.Interpolation.pillowBilinear, .pillowBicubic, .nearest])
  func equalsPerLength(interpolation: PreprocessConfig.Interpolation) throws {
    let windowed = Resampler()
    let perLength = Resampler()
    perLength.usesWindows = false
    var widths = Set<Int>()
    for (index, (width, height, outWidth, outHeight)) in Self.cases.enumerated() {
      let image = PreprocessFixtures.image(width: width, height: height, seed: UInt64(index))
      let plan = try ResizePlan(
        interpolation: interpolation, width: width, height: height,
        region: (0, 0, width, height), resized: (outWidth, outHeight),
        keep: (0, 0, outWidth, outHeight), place: (0, 0), side: max(outWidth, outHeight))
      widths.insert(plan.horizontal.windowWidth)
      widths.insert(plan.vertical.windowWidth)
      let fast = try Resampler.resize(
        image, width: outWidth, height: outHeight, interpolation: interpolation, using: windowed)
      let slow = try Resampler.resize(
        image, width: outWidth, height: outHeight, interpolation: interpolation, using: perLength)
      #expect(
        fast.pixels == slow.pixels, "\(interpolation) \(width)×\(height) → \(outWidth)×\(outHeight)"
      )
    }
    if interpolation == .pillowBilinear {
      // The cases above must reach the specialised widths, not only the fallback.
      #expect(widths.isSuperset(of: [2, 3, 4]), "window widths seen: \(widths.sorted())")
    }
  }

  @Test("cropped plans (only the kept block resampled) agree too, for every preset")
  func croppedPlans() throws {
    for preset in PreprocessPreset.allCases {
      let windowed = try Preprocessor(config: preset.config)
      for (index, (width, height)) in [(500, 375), (227, 227), (375, 500), (1200, 80), (33, 900)]
        .enumerated()
      {
        let image = PreprocessFixtures.image(width: width, height: height, seed: UInt64(index + 50))
        let plan = try windowed.plan(width: width, height: height)
        guard plan.kernel == .pillow else { continue }
        let fast = try windowed.pixels(for: image)
        let reference = try Preprocessor(config: preset.config)
        reference.resamplerUsesWindows = false
        let slow = try reference.pixels(for: image)
        #expect(fast.pixels == slow.pixels, "\(preset.rawValue) \(width)×\(height)")
      }
    }
  }
}
