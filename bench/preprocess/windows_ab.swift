// A/B of the Dataset-internal fast paths against the code they replace, in one process on the
// same inputs: Pillow resampling over fixed-width tap windows vs the per-length loops (both
// still run the single-pass writeTensor), and the byte-level ground-truth parser vs the
// Character parser. Compiled into the Dataset module by windows_ab.sh (it uses internal API).
// Arguments: repeats, a directory of JPEGs, the repository root, the shared root.
import Foundation

func now() -> Double { Date().timeIntervalSince1970 }
let arguments = CommandLine.arguments
let repeats = Int(arguments[1]) ?? 3
let dir = arguments[2]
let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
let files = names.map { try! Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0)) }
let decoder = try JPEGDecoder()
var images: [RGBImage] = []
var t = now()
for f in files {
  var image = RGBImage()
  try f.withUnsafeBytes { _ = try decoder.decode($0, into: &image) }
  images.append(image)
}
print(String(format: "decode: %.1f img/s", Double(files.count) / (now() - t)))
// Synthetic larger images (typical ImageNet sizes) from upscaled real ones.
var big: [RGBImage] = []
let sizes = [(500, 375), (375, 500), (500, 333), (640, 480), (333, 500), (1024, 768)]
let up = Resampler()
for (i, image) in images.prefix(120).enumerated() {
  let (w, h) = sizes[i % sizes.count]
  big.append(
    try Resampler.resize(image, width: w, height: h, interpolation: .pillowBicubic, using: up))
}
for preset in [PreprocessPreset.torchvision, .efficientnetLite] {
  for (label, set) in [("real 227x227", images), ("synthetic 500x375-ish", big)] {
    let fast = try Preprocessor(config: preset.config)
    let slow = try Preprocessor(config: preset.config)
    slow.resamplerUsesWindows = false
    var out1 = [Float](repeating: 0, count: fast.outputElementCount)
    var out2 = [Float](repeating: 0, count: fast.outputElementCount)
    var mismatches = 0
    for image in set {
      try out1.withUnsafeMutableBufferPointer { try fast.apply(image, into: $0) }
      try out2.withUnsafeMutableBufferPointer { try slow.apply(image, into: $0) }
      // Bit-for-bit: the float tensors, so resampling and normalisation must both agree.
      if out1 != out2 { mismatches += 1 }
    }
    var best = (Double.infinity, Double.infinity)
    for _ in 0..<repeats {
      for (k, p) in [fast, slow].enumerated() {
        let s = now()
        for image in set {
          try out1.withUnsafeMutableBufferPointer { try p.apply(image, into: $0) }
        }
        let e = now() - s
        if k == 0 { best.0 = min(best.0, e) } else { best.1 = min(best.1, e) }
      }
    }
    print(
      String(
        format: "%@ %@: windows %.0f img/s, per-length %.0f img/s (%.2fx), mismatches %d/%d",
        preset.rawValue, label, Double(set.count) / best.0, Double(set.count) / best.1,
        best.1 / best.0, mismatches, set.count))
  }
}
// Ground truth parsing.
let classes = try ClassIndex.imageNet1k(
  labelsDirectory: URL(fileURLWithPath: arguments[3] + "/labels"))
for path in [
  arguments[4] + "/labels/caffe_val.txt",
  arguments[3] + "/labels/ILSVRC2012_validation_ground_truth.txt",
] {
  let url = URL(fileURLWithPath: path)
  let format: GroundTruth.Format = path.hasSuffix("truth.txt") ? .perLine : .auto
  var fastBest = Double.infinity
  var slowBest = Double.infinity
  var a: GroundTruth? = nil
  var b: GroundTruth? = nil
  for _ in 0..<repeats {
    var s = now()
    a = try GroundTruth.load(contentsOf: url, format: format, classes: classes)
    fastBest = min(fastBest, now() - s)
    s = now()
    b = try GroundTruth.load(
      text: String(decoding: try Data(contentsOf: url), as: UTF8.self), path: url.path,
      format: format, classes: classes)
    slowBest = min(slowBest, now() - s)
  }
  print(
    String(
      format: "ground truth %@: byte parser %.1f ms, Character parser %.1f ms, equal %@",
      url.lastPathComponent, fastBest * 1000, slowBest * 1000,
      String(a!.labels == b!.labels && a!.source == b!.source)))
}
