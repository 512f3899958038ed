import Foundation
import TestSupport

@testable import Dataset

/// Deterministic test images and comparison statistics for the preprocessing tests.
enum PreprocessFixtures {
  /// A "photo-like" image: smooth gradients and stripes (so resampling differences show up as
  /// in real images) plus per-pixel noise from an LCG (so every tap matters).
  static func image(width: Int, height: Int, seed: UInt64) -> RGBImage {
    var state = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
      for x in 0..<width {
        for c in 0..<3 {
          state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
          let noise = Double((state >> 33) % 64) - 32
          let fx = Double(x) / Double(max(width, 1))
          let fy = Double(y) / Double(max(height, 1))
          let wave = 60 * sin(Double(x + 3 * c) * 0.35) * cos(Double(y) * 0.21)
          let base = 255 * (c == 0 ? fx : c == 1 ? fy : 1 - (fx + fy) / 2)
          let value = 0.6 * base + wave + noise + 40
          pixels[(y * width + x) * 3 + c] = UInt8(min(max(value.rounded(), 0), 255))
        }
      }
    }
    return RGBImage(width: width, height: height, pixels: pixels)
  }

  static func save(_ image: RGBImage, to url: URL) throws {
    let array = try NumpyArray(shape: [image.height, image.width, 3], values: image.pixels)
    try NumpyFile.write(array, to: url)
  }

  /// How close two 8-bit buffers are.
  struct Agreement: CustomStringConvertible {
    var count = 0
    var exact = 0
    var withinOne = 0
    var maxDiff = 0

    init(_ a: [UInt8], _ b: [UInt8]) {
      count = min(a.count, b.count)
      for i in 0..<count {
        let diff = abs(Int(a[i]) - Int(b[i]))
        if diff == 0 { exact += 1 }
        if diff <= 1 { withinOne += 1 }
        maxDiff = max(maxDiff, diff)
      }
    }

    var exactFraction: Double { count == 0 ? 1 : Double(exact) / Double(count) }
    var withinOneFraction: Double { count == 0 ? 1 : Double(withinOne) / Double(count) }
    var description: String {
      String(
        format: "max diff %d, exact %.4f%%, within ±1 %.4f%% of %d values", maxDiff,
        100 * exactFraction, 100 * withinOneFraction, count)
    }
  }

  /// Runs one batch of reference jobs in a single Python process.
  static func runReference(jobs: [[String: Any]], in directory: URL) throws {
    let jobsURL = directory.appendingPathComponent("jobs.json")
    let data = try JSONSerialization.data(withJSONObject: jobs)
    try data.write(to: jobsURL)
    try PythonReference.run(
      script: "scripts/reference/preprocess_reference.py", arguments: [jobsURL.path])
  }

  /// The configuration as the JSON object the reference script reads.
  static func json(_ config: PreprocessConfig) throws -> Any {
    try JSONSerialization.jsonObject(with: JSONEncoder().encode(config))
  }
}
