import Foundation
import Testing

@testable import Model

/// Throughput of the float engine, run by bench/engine/run.sh (which sets the model path).
/// Not part of the normal suite: it asserts nothing about speed and is skipped unless
/// `IMAGENET_EVAL_BENCH_MODEL` names an ONNX file.
@Suite("float engine benchmark")
struct FloatEngineBenchmark {
  static let modelPath = ProcessInfo.processInfo.environment["IMAGENET_EVAL_BENCH_MODEL"]

  @Test(
    "images per second at batch 1 and 16",
    .enabled(if: modelPath != nil, "set IMAGENET_EVAL_BENCH_MODEL (bench/engine/run.sh does)"))
  func throughput() throws {
    let path = try #require(Self.modelPath)
    let environment = ProcessInfo.processInfo.environment
    let threads = environment["IMAGENET_EVAL_BENCH_THREADS"].flatMap { Int($0) } ?? 2
    let seconds = environment["IMAGENET_EVAL_BENCH_SECONDS"].flatMap { Double($0) } ?? 5
    let graph = try ONNXLoader.load(contentsOf: URL(fileURLWithPath: path))
    for batch in [1, 16] {
      let buildStart = Date()
      let engine = try FloatEngine(graph: graph, batchSize: batch, threads: threads, strict: true)
      let buildTime = Date().timeIntervalSince(buildStart)
      var generator = SeededGenerator(seed: 5)
      let input = (0..<engine.inputElementCount).map { _ in
        Float.random(in: -1...1, using: &generator)
      }
      var output = [Float](repeating: 0, count: batch * engine.classCount)
      func runOnce() throws {
        try input.withUnsafeBufferPointer { i in
          try output.withUnsafeMutableBufferPointer { try engine.run(input: i, output: $0) }
        }
      }
      for _ in 0..<3 { try runOnce() }
      var runs = 0
      let start = Date()
      while Date().timeIntervalSince(start) < seconds {
        try runOnce()
        runs += 1
      }
      let elapsed = Date().timeIntervalSince(start)
      print(
        "float engine threads=\(threads) batch=\(batch): "
          + String(
            format: "%.1f img/s (%.2f ms/batch, build %.0f ms)", Double(runs * batch) / elapsed,
            elapsed / Double(runs) * 1000, buildTime * 1000))
    }
  }
}
