import Dispatch
import Foundation
import TestSupport
import Testing

@testable import Dataset

/// Kernel throughput (resize + crop + normalise, no decoding) against Pillow on the same
/// pixels, in the same run. Prints numbers, asserts nothing about speed; run it through
/// `bench/preprocess/run.sh` (release build), which sets `IMAGENET_EVAL_BENCH=1`.
@Suite(
  "Preprocess kernel benchmark",
  .enabled(
    if: ProcessInfo.processInfo.environment["IMAGENET_EVAL_BENCH"] == "1"
      && TestEnvironment.pythonAvailable,
    "set IMAGENET_EVAL_BENCH=1 (bench/preprocess/run.sh) to run the preprocessing benchmark"))
struct PreprocessBenchmarkTests {
  @Test("torchvision preset: Swift kernels vs Pillow, 1 and 2 threads")
  func torchvisionThroughput() throws {
    let environment = ProcessInfo.processInfo.environment
    var stacks: [(String, URL)] = []
    if let real = environment["IMAGENET_EVAL_BENCH_STACK"] {
      stacks.append(("ILSVRC2012 subset (decoded by Pillow)", URL(fileURLWithPath: real)))
    }
    let directory = try TestEnvironment.makeTemporaryDirectory("preprocess-bench")
    defer { try? FileManager.default.removeItem(at: directory) }
    // Typical full-size ImageNet geometry (500×375 → 341×256 → 224), synthetic pixels.
    let synthetic = directory.appendingPathComponent("synthetic.npy")
    let count = 300
    var pixels: [UInt8] = []
    for index in 0..<count {
      pixels += PreprocessFixtures.image(width: 500, height: 375, seed: UInt64(index)).pixels
    }
    try NumpyFile.write(try NumpyArray(shape: [count, 375, 500, 3], values: pixels), to: synthetic)
    stacks.append(("synthetic 500×375", synthetic))

    for (label, url) in stacks {
      let stack = try NumpyFile.read(url)
      let (n, height, width) = (stack.shape[0], stack.shape[1], stack.shape[2])
      let bytes = try stack.values(as: UInt8.self)
      let imageSize = height * width * 3
      let images = (0..<n).map { index in
        RGBImage(
          width: width, height: height,
          pixels: Array(bytes[(index * imageSize)..<((index + 1) * imageSize)]))
      }
      var rates: [Int: Double] = [:]
      for threads in [1, 2] {
        let preprocessors = try (0..<threads).map { _ in try Preprocessor(preset: .torchvision) }
        // Warm-up: tables cached, scratch grown, as in a steady-state run.
        for preprocessor in preprocessors { _ = try preprocessor.pixels(for: images[0]) }
        let start = DispatchTime.now().uptimeNanoseconds
        DispatchQueue.concurrentPerform(iterations: threads) { worker in
          let preprocessor = preprocessors[worker]
          var output = [Float](repeating: 0, count: preprocessor.outputElementCount)
          output.withUnsafeMutableBufferPointer { buffer in
            for index in stride(from: worker, to: n, by: threads) {
              try? preprocessor.apply(images[index], into: buffer)
            }
          }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        rates[threads] = Double(n) / seconds
        print(
          String(
            format: "swift kernel [%@] threads=%d images=%d seconds=%.3f images_per_s=%.1f",
            label, threads, n, seconds, Double(n) / seconds))
      }
      let peer = try PythonReference.run(
        script: "bench/preprocess/pillow_peer.py", arguments: ["kernel", url.path])
      print(peer.split(separator: "\n").map { "  [\(label)] \($0)" }.joined(separator: "\n"))
      for line in peer.split(separator: "\n") {
        guard
          let threadsField = line.split(separator: " ").first(where: { $0.hasPrefix("threads=") }),
          let rateField = line.split(separator: " ").first(where: { $0.hasPrefix("images_per_s=") }
          ),
          let threads = Int(threadsField.dropFirst("threads=".count)),
          let pillowRate = Double(rateField.dropFirst("images_per_s=".count)),
          let swiftRate = rates[threads]
        else { continue }
        print(
          String(
            format: "ratio [%@] threads=%d swift/pillow=%.2f", label, threads,
            swiftRate / pillowRate))
      }
    }
  }
}
