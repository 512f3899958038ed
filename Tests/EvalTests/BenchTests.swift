import Foundation
import TestSupport
import Testing

@testable import Eval

/// `bench`: the JSON it writes is the shape `table --bench` reads and is self-consistent.
/// (No timing assertions: speed itself is measured in bench/.)
@Suite struct BenchTests {
  @Test(
    .requiresPython)
  func writesAConsistentBenchReport() throws {
    let root = try TestEnvironment.makeTemporaryDirectory("bench-tests")
    defer { try? FileManager.default.removeItem(at: root) }
    let model = root.appendingPathComponent("tiny.onnx")
    try RunFixture.tinyModel(at: model)
    let json = root.appendingPathComponent("bench.json")
    #expect(
      ImagenetEval.exitStatus(arguments: [
        "bench", "--model", model.path, "--engines", "float,reference", "--batch", "1,3",
        "--seconds", "0.05", "--threads", "1", "--name", "Tiny", "--json", json.path,
      ]) == 0)
    let report = try BenchReport.read(from: json)
    #expect(report.model == "Tiny")
    #expect(report.modelSHA256 == (try SHA256.hexDigest(ofFile: model)))
    #expect(report.results.map(\.engine) == ["float", "float", "reference", "reference"])
    #expect(report.results.map(\.batchSize) == [1, 3, 1, 3])
    for entry in report.results {
      #expect(entry.imagesPerSecond > 0 && entry.latencyMS > 0)
      // Throughput is batch size over mean batch time: the two columns must agree.
      let implied = Double(entry.batchSize) * 1000 / entry.latencyMS
      #expect(abs(implied - entry.imagesPerSecond) <= 1e-9 * implied)
    }
  }

  @Test func percentilesInterpolateLikeNumpy() {
    // numpy.percentile([1, 2, 3, 4], 50) == 2.5, ([1, 2, 3, 4], 90) == 3.7
    #expect(BenchCommand.percentile([1, 2, 3, 4], 0.5) == 2.5)
    #expect(abs(BenchCommand.percentile([1, 2, 3, 4], 0.9) - 3.7) < 1e-12)
    #expect(BenchCommand.percentile([5], 0.9) == 5)
  }

  @Test func badOptionsExitOne() {
    #expect(
      ImagenetEval.exitStatus(arguments: ["bench", "--model", "m.onnx", "--batch", "0"]) == 1)
    #expect(
      ImagenetEval.exitStatus(arguments: ["bench", "--model", "m.onnx", "--seconds", "0"]) == 1)
    #expect(ImagenetEval.exitStatus(arguments: ["bench", "--model", "/nonexistent.onnx"]) == 1)
  }
}
