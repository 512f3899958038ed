import Foundation
import TestSupport
import Testing

@testable import Model

/// Sharded batches (`BatchShards`): one single-threaded plan per thread, each on a slice of the
/// batch, must compute what the whole-batch plan computes.
@Suite("Batch shards", .serialized)
struct BatchShardTests {
  /// Two threads; 16 splits evenly, 5 does not (2 + 3).
  static let batches = [16, 5]

  @Test("shard sizes cover the batch in order, one per thread")
  func sizes() throws {
    #expect(BatchShards.sizes(batchSize: 16, threads: 2) == [8, 8])
    #expect(BatchShards.sizes(batchSize: 5, threads: 2) == [2, 3])
    #expect(BatchShards.sizes(batchSize: 12, threads: 4) == [3, 3, 3, 3])
    #expect(BatchShards.sizes(batchSize: 3, threads: 4) == nil)
    #expect(BatchShards.sizes(batchSize: 16, threads: 1) == nil)
    #expect(BatchShards.sizes(batchSize: 1, threads: 2) == nil)
  }

  @Test("every shard runs once; the lowest failing shard's error is rethrown")
  func runAndErrors() throws {
    struct Failure: Error, Equatable { var shard: Int }
    var visits = [Int](repeating: 0, count: 3)
    try visits.withUnsafeMutableBufferPointer { counts in
      try BatchShards.run(3) { counts[$0] += 1 }
    }
    #expect(visits == [1, 1, 1])
    #expect(throws: Failure(shard: 1)) {
      try BatchShards.run(3) { shard in if shard >= 1 { throw Failure(shard: shard) } }
    }
  }

  @Test(
    "float: sharded logits equal the whole-batch plan's (FasterNet-T0-like, MobileNet-like)",
    .requiresPython,
    arguments: ["fasternet_t0", "mobileish"])
  func floatMatchesUnsharded(kind: String) throws {
    let graph = try int8TestModel(kind)
    for batch in Self.batches {
      let sharded = try FloatEngine(
        graph: graph, batchSize: batch, threads: 2, strict: true, requiresClassifierOutput: true)
      let whole = try FloatEngine(
        graph: graph, batchSize: batch, threads: 2, strict: true, requiresClassifierOutput: true,
        shards: 1)
      #expect(sharded.shardSizes == BatchShards.sizes(batchSize: batch, threads: 2))
      #expect(sharded.versionInfo["batch_shards"]?.hasPrefix("2 (") == true)
      #expect(whole.shardSizes.isEmpty && whole.versionInfo["batch_shards"] == "1")
      // The same nodes lowered, except that on two threads the whole-batch plan runs each
      // partial convolution as one kernel (named by its convolution) where the one-thread
      // shards keep the Split and Concat primitives.
      let partialSlices = Set(
        graph.nodes.filter {
          switch $0.op {
          case .split, .concat: return true
          default: return false
          }
        }.map(\.name))
      #expect(
        sharded.implementations.map(\.node).filter { !partialSlices.contains($0) }
          == whole.implementations.map(\.node).filter { !partialSlices.contains($0) })
      let input = randomValues(batch * 3 * 32 * 32, seed: 7, in: -2...2)
      let expected = try runEngine(whole, input)
      let got = try runEngine(sharded, input)
      #expect(try runEngine(sharded, input) == got, "a second run gives the same logits")
      let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .nan
      let scale = expected.map(abs).max() ?? 1
      // Sub-batch primitives may pick other kernels (blocking over the batch), which reorders
      // float sums: agreement to rounding, not bit-identity.
      #expect(worst <= 1e-5 * max(scale, 1), "\(kind) batch \(batch): max |diff| \(worst)")
      if worst != 0 {
        print(
          "\(kind) float batch \(batch): sharded vs whole max |diff| \(worst) (logits up to \(scale))"
        )
      }
      // An observed run takes the whole-batch plan and sees every node.
      var observed = 0
      var logits = [Float](repeating: .nan, count: batch * sharded.classCount)
      try input.withUnsafeBufferPointer { x in
        try logits.withUnsafeMutableBufferPointer { y in
          try sharded.run(input: x, output: y) { _ in observed += 1 }
        }
      }
      #expect(observed > 0)
      #expect(logits == expected, "the observed run is the whole-batch plan")
    }
  }

  @Test(
    "int8: sharded logits are bit-identical to the whole-batch plan's (calibrated and quantized-model inits)",
    .requiresPython,
    arguments: ["fasternet_t0", "mobileish"])
  func int8MatchesUnsharded(kind: String) throws {
    let graph = try int8TestModel(kind)
    let calibration = try Int8Engine.calibrate(
      graph: graph, batchSize: 2, imageCount: 4, nextBatch: seededBatches(2, images: 2, seed: 3))
    for batch in Self.batches {
      let sharded = try Int8Engine(
        graph: graph, batchSize: batch, calibration: calibration, settings: Int8Settings(),
        threads: 2, shards: nil)
      let whole = try Int8Engine(
        graph: graph, batchSize: batch, calibration: calibration, settings: Int8Settings(),
        threads: 2, shards: 1)
      #expect(sharded.shardSizes == BatchShards.sizes(batchSize: batch, threads: 2))
      #expect(sharded.versionInfo["batch_shards"]?.hasPrefix("2 (") == true)
      #expect(whole.versionInfo["batch_shards"] == "1")
      #expect(sharded.quantizedNodes == whole.quantizedNodes)
      #expect(sharded.floatFallbackNodes == whole.floatFallbackNodes)
      #expect(!sharded.quantizedNodes.isEmpty)
      let input = randomValues(batch * 3 * 32 * 32, seed: 9, in: -2...2)
      let expected = try runEngine(whole, input)
      #expect(expected.allSatisfy { $0.isFinite })
      #expect(try runEngine(sharded, input) == expected, "\(kind) int8 batch \(batch)")
      #expect(try runEngine(sharded, input) == expected, "second run, \(kind) batch \(batch)")
      // The layer report runs the whole-batch plan with an observer.
      let report = try input.withUnsafeBufferPointer {
        try sharded.layerReport(input: $0, images: batch)
      }
      #expect(!report.layers.isEmpty)

      // The same model exported as QDQ and run through `init(quantizedGraph:)` (the
      // MobileNet-like export dequantises its squeeze-excite scale per channel, which the
      // import does not take).
      guard kind == "fasternet_t0" else { continue }
      let quantized = try ONNXLoader.load(data: try whole.quantizedModel())
      let importedSharded = try Int8Engine(
        quantizedGraph: quantized, batchSize: batch, threads: 2, shards: nil)
      let importedWhole = try Int8Engine(
        quantizedGraph: quantized, batchSize: batch, threads: 2, shards: 1)
      #expect(importedSharded.shardSizes == BatchShards.sizes(batchSize: batch, threads: 2))
      let importedExpected = try runEngine(importedWhole, input)
      #expect(importedExpected.allSatisfy { $0.isFinite })
      #expect(try runEngine(importedSharded, input) == importedExpected, "QDQ \(kind) \(batch)")
    }
  }
}
