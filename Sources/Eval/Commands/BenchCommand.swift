import ArgumentParser
import Foundation
import Model

/// `imagenet-eval bench --model m.onnx [--engines float] [--batch 1,16]`: host-side
/// throughput and latency of each engine at each batch size.
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure images/s and per-batch latency of each engine at each batch size.",
    discussion: """
      Inputs are fixed pseudo-random tensors (no decoding or preprocessing): this measures \
      the engine alone. Each measurement warms up, then runs batches for --seconds (at least \
      5 batches). --json writes the bench.json that `table --bench` reads.

      The int8 engine quantizes a float model first: give it calibration images with \
      --calib DATA --calib-count N and the model's preprocessing (--preset …), as for `run`. \
      It calibrates once and builds one engine per batch size from that calibration. A model \
      that is already quantized (QDQ or QOperator, e.g. from onnxruntime's quantize_static or \
      `imagenet-eval quantize`) runs on int8 with its own scales and codes, the default engine \
      then: calibration options are refused, and float is refused (the file holds no float \
      model; reference evaluates its ONNX definition in float).
      """)

  @Option(help: ArgumentHelp("The ONNX classifier.", valueName: "file"))
  var model: String

  @Option(
    help: ArgumentHelp(
      "Engines, comma-separated: \(EngineFactory.knownNames.joined(separator: ", ")) "
        + "(default: float; int8 for a quantized model).",
      valueName: "list"))
  var engines: String?

  @Option(
    name: .customLong("batch"),
    help: ArgumentHelp("Batch sizes, comma-separated.", valueName: "list"))
  var batches: String = "1,16"

  @Option(help: ArgumentHelp("oneDNN threads (default: one per core).", valueName: "n"))
  var threads: Int?

  @Option(help: ArgumentHelp("Seconds of timed runs per engine and batch size.", valueName: "s"))
  var seconds: Double = 5

  @Option(help: ArgumentHelp("Model name in the JSON (default: the file name).", valueName: "name"))
  var name: String?

  @Option(help: ArgumentHelp("Write the results as bench.json here.", valueName: "file"))
  var json: String?

  @OptionGroup(title: "int8 calibration")
  var calibrationOptions: CalibrationOptions

  @OptionGroup(title: "Preprocessing of the calibration images")
  var preprocessing: PreprocessOptions

  func validate() throws {
    try OptionChecks.require(threads, atLeast: 1, "--threads")
    guard seconds > 0, seconds.isFinite else {
      throw ValidationError("--seconds must be positive, got \(seconds)")
    }
    _ = try batchSizes()
  }

  func batchSizes() throws -> [Int] {
    let sizes = batches.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) > 0 }) else {
      throw ValidationError("--batch must list positive batch sizes, got '\(batches)'")
    }
    return sizes.compactMap { $0 }
  }

  func run() throws {
    let sizes = try batchSizes()
    let graph = try EngineFactory.loadModel(at: model)
    let names = try EngineFactory.parseNames(engines ?? EngineFactory.defaultEngine(for: graph))
    let digest = try SHA256.hexDigest(ofFile: URL(fileURLWithPath: model))
    let modelName = name ?? URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
    print("model \(modelName) (\(model)), threads \(threads.map(String.init) ?? "default")")
    print("engine     batch   images/s   mean ms    p50 ms    p90 ms   batches")
    let int8 = try calibrationOptions.prepareInt8(
      engines: names, graph: graph, preprocessing: preprocessing, threads: threads,
      modelPath: model)
    var quantization: [String: String]?
    var entries = [BenchReport.Entry]()
    for engineName in names {
      for batchSize in sizes {
        let engine = try EngineFactory.makeEngine(
          named: engineName, graph: graph, batchSize: batchSize, threads: threads,
          strict: false, modelPath: model, calibration: int8.calibration)
        if let engine = engine as? Int8Engine, batchSize == sizes[0] {
          quantization = Int8Provenance.report(
            engine, imported: int8.imported, calibration: calibrationOptions)
        }
        let result = try Self.measure(engine, seconds: seconds)
        entries.append(
          BenchReport.Entry(
            engine: engineName, batchSize: batchSize, imagesPerSecond: result.imagesPerSecond,
            latencyMS: result.meanMS))
        print(
          engineName.padding(toLength: 9, withPad: " ", startingAt: 0)
            + String(
              format: " %6ld %10.1f %9.2f %9.2f %9.2f %9ld", batchSize, result.imagesPerSecond,
              result.meanMS, result.p50MS, result.p90MS, result.batches))
      }
    }
    if let json {
      var report = BenchReport(model: modelName, modelSHA256: digest, results: entries)
      report.modelPath = model
      report.int8 = quantization
      var data = try JSONEncoder.canonical.encode(report)
      data.append(0x0A)
      try writeAtomically(data, to: URL(fileURLWithPath: json))
    }
  }

  /// Timing of one engine at its batch size.
  struct Measurement {
    var batches: Int
    var imagesPerSecond: Double
    var meanMS: Double
    var p50MS: Double
    var p90MS: Double
  }

  /// Warms up (two batches, or more up to ~10% of the budget), then times whole batches for
  /// `seconds`, at least five.
  static func measure(_ engine: any InferenceEngine, seconds: Double) throws -> Measurement {
    var input = [Float](repeating: 0, count: engine.inputElementCount)
    // A fixed xorshift sequence in [-1, 1): realistic magnitudes, identical across runs.
    var state: UInt32 = 0x9E37_79B9
    for i in input.indices {
      state ^= state << 13
      state ^= state >> 17
      state ^= state << 5
      input[i] = Float(state >> 8) / Float(1 << 23) - 1
    }
    var output = [Float](repeating: 0, count: engine.batchSize * engine.classCount)
    var latencies = [Double]()
    try input.withUnsafeBufferPointer { inputBuffer in
      try output.withUnsafeMutableBufferPointer { outputBuffer in
        let warmStart = DispatchTime.now().uptimeNanoseconds
        var warm = 0
        while warm < 2
          || (Double(DispatchTime.now().uptimeNanoseconds - warmStart) / 1e9 < seconds * 0.1
            && warm < 20)
        {
          try engine.run(input: inputBuffer, output: outputBuffer)
          warm += 1
        }
        let start = DispatchTime.now().uptimeNanoseconds
        while latencies.count < 5
          || Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < seconds
        {
          let t0 = DispatchTime.now().uptimeNanoseconds
          try engine.run(input: inputBuffer, output: outputBuffer)
          latencies.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
      }
    }
    let total = latencies.reduce(0, +)
    let sorted = latencies.sorted()
    return Measurement(
      batches: latencies.count,
      imagesPerSecond: Double(latencies.count * engine.batchSize) / (total / 1000),
      meanMS: total / Double(latencies.count), p50MS: percentile(sorted, 0.5),
      p90MS: percentile(sorted, 0.9))
  }

  /// Linear interpolation between closest ranks (numpy's default) of ascending `sorted`.
  static func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let position = q * Double(sorted.count - 1)
    let lower = Int(position.rounded(.down))
    let upper = min(lower + 1, sorted.count - 1)
    let fraction = position - Double(lower)
    return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction
  }
}
