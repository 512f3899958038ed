import Foundation
import Model

/// Builds the inference engines a command names (`--engines float,int8`).
///
/// Every command that runs a model goes through here, so adding an engine is one case in
/// ``makeEngine(named:graph:batchSize:threads:strict:)``. Engine names are the keys of the
/// records and reports: the first engine is the reference, the second the primary candidate.
public enum EngineFactory {
  /// The engine names this build knows, in the order `--help` lists them.
  public static let knownNames = ["float", "reference", "int8"]

  /// Builders registered at run time under extra names; tests use this to run `run` with a
  /// deliberately perturbed engine. Guarded by `registryLock`.
  nonisolated(unsafe) private static var registry:
    [String: (Graph, Int, Int?, Bool) throws -> any InferenceEngine] = [:]
  private static let registryLock = NSLock()

  /// Registers `builder` under `name` (replacing any earlier registration of that name).
  /// The builder receives the graph, batch size, thread count and strict flag.
  static func register(
    _ name: String,
    builder: @escaping (Graph, Int, Int?, Bool) throws -> any InferenceEngine
  ) {
    registryLock.lock()
    registry[name] = builder
    registryLock.unlock()
  }

  /// Removes a registration made with ``register(_:builder:)``.
  static func unregister(_ name: String) {
    registryLock.lock()
    registry[name] = nil
    registryLock.unlock()
  }

  private static func registered(_ name: String) -> (
    (Graph, Int, Int?, Bool) throws -> any InferenceEngine
  )? {
    registryLock.lock()
    defer { registryLock.unlock() }
    return registry[name]
  }

  /// The engine a command runs when none is named: `int8` for a quantized model (it holds no
  /// float model), `float` otherwise.
  public static func defaultEngine(for graph: Graph) -> String {
    graph.isQuantized ? "int8" : "float"
  }

  /// Splits a comma-separated `--engines` value into names, checking that each is known and
  /// none repeats.
  public static func parseNames(_ text: String) throws -> [String] {
    let names = text.split(separator: ",", omittingEmptySubsequences: false).map {
      $0.trimmingCharacters(in: .whitespaces)
    }
    guard !names.isEmpty, !names.contains(where: \.isEmpty) else {
      throw EvalError(
        .input,
        "--engines: empty engine name in '\(text)' (known: \(knownNames.joined(separator: ", ")))")
    }
    for name in names where !knownNames.contains(name) && registered(name) == nil {
      throw EvalError(
        .input,
        "--engines: unknown engine '\(name)' (known: \(knownNames.joined(separator: ", ")))")
    }
    guard Set(names).count == names.count else {
      throw EvalError(.input, "--engines: '\(text)' names an engine twice")
    }
    return names
  }

  /// What the int8 engine calibrates on: its settings, how many images to ask for, and a
  /// closure that fills one batch of preprocessed images and returns how many it filled (0 at
  /// the end of the calibration data).
  public struct CalibrationInput {
    /// Method, percentile, scheme and float-node overrides.
    public var settings: Int8Settings
    /// Images requested (`--calib-count`); fewer available is a recorded warning.
    public var imageCount: Int
    /// Fills the next calibration batch.
    public var nextBatch: (UnsafeMutableBufferPointer<Float>) throws -> Int
    /// A calibration already made from these images (commands that build the int8 engine at
    /// several batch sizes calibrate once); when set, `nextBatch` is not called.
    public var calibrated: Int8Calibration?

    /// Creates a calibration input.
    public init(
      settings: Int8Settings, imageCount: Int,
      nextBatch: @escaping (UnsafeMutableBufferPointer<Float>) throws -> Int
    ) {
      self.settings = settings
      self.imageCount = imageCount
      self.nextBatch = nextBatch
    }
  }

  /// Seconds spent calibrating while engines were built (the rest of the build time is
  /// quantising, planning and binding kernels), for `summary.json`'s phase timings.
  public final class BuildClock {
    /// Seconds of int8 calibration so far.
    public var calibrationSeconds = 0.0
    /// Creates a clock at zero.
    public init() {}
  }

  /// Builds engine `name` for `graph` at `batchSize` images per run.
  ///
  /// `threads` is the oneDNN/OpenMP thread count (nil: one per core); `strict` makes a
  /// primitive that would fall back to a slow reference kernel an error. Model problems
  /// (unsupported ops, bad shapes) become ``EvalError``s of kind `.input` naming `modelPath`.
  /// `calibrationThreads` is the float pass's thread count when int8 calibrates (nil:
  /// `threads`): calibration runs alone, so it may use more threads than the engine will.
  public static func makeEngine(
    named name: String, graph: Graph, batchSize: Int, threads: Int?, strict: Bool,
    modelPath: String, calibration: CalibrationInput? = nil, clock: BuildClock? = nil,
    calibrationThreads: Int? = nil
  ) throws -> any InferenceEngine {
    do {
      switch name {
      case "float":
        guard !graph.isQuantized else {
          throw EvalError(.input, floatOnQuantizedMessage(modelPath))
        }
        return try FloatEngine(graph: graph, batchSize: batchSize, threads: threads, strict: strict)
      case "reference":
        return try ReferenceEngine(graph: graph, batchSize: batchSize)
      case "int8":
        if let builder = registered(name) { return try builder(graph, batchSize, threads, strict) }
        // A quantized model carries its own scales and codes: nothing to calibrate.
        if graph.isQuantized {
          return try Int8Engine(quantizedGraph: graph, batchSize: batchSize, threads: threads)
        }
        guard let calibration else {
          throw EvalError(
            .input,
            "the int8 engine quantizes the float model on calibration images; this command has "
              + "none: use `imagenet-eval run --engines float,int8` (--calib, --calib-count)")
        }
        // A calibration made once by the command (bench: one per batch size) is reused.
        if let calibrated = calibration.calibrated {
          return try Int8Engine(
            graph: graph, batchSize: batchSize, calibration: calibrated,
            settings: calibration.settings, threads: threads)
        }
        // Calibration and the build are timed apart; misspelt node names fail before the
        // (long) calibration.
        let known = Set(graph.nodes.map(\.name))
        for (option, names) in [
          ("--float", calibration.settings.floatNodes),
          ("--int16", calibration.settings.int16Nodes),
        ] {
          if let unknown = names.sorted().first(where: { !known.contains($0) }) {
            throw EvalError(.input, "\(option): \(modelPath) has no node named '\(unknown)'")
          }
        }
        return try Int8Engine.calibratedEngine(
          graph: graph, batchSize: batchSize, imageCount: calibration.imageCount,
          settings: calibration.settings, calibrationThreads: calibrationThreads ?? threads,
          threads: threads, calibrated: { clock?.calibrationSeconds += $0 },
          nextBatch: calibration.nextBatch)
      default:
        guard let builder = registered(name) else {
          throw EvalError(
            .input,
            "unknown engine '\(name)' (known: \(knownNames.joined(separator: ", ")))")
        }
        return try builder(graph, batchSize, threads, strict)
      }
    } catch {
      throw EvalError(modelFailure: error, "\(modelPath): cannot build the \(name) engine")
    }
  }

  /// Why `float` does not run a quantized model: it holds no float model, only the int8
  /// one, which `int8` runs and `reference` evaluates as ONNX defines it.
  static func floatOnQuantizedMessage(_ modelPath: String) -> String {
    "\(modelPath) is already quantized, so it holds no float model to run: use the int8 engine "
      + "(the model's own scales and codes), the reference engine for its ONNX definition "
      + "evaluated in float (e.g. --engines reference,int8), or the float source model to "
      + "measure the int8 drop"
  }

  /// Reads an ONNX model, turning every loader failure (missing file, not ONNX, bad tensor)
  /// into an ``EvalError`` of kind `.input` that names the file.
  public static func loadModel(at path: String) throws -> Graph {
    let url = URL(fileURLWithPath: path)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
      throw EvalError(.input, "--model: \(path) does not exist")
    }
    guard !isDirectory.boolValue else {
      throw EvalError(.input, "--model: \(path) is a directory, not an ONNX file")
    }
    do {
      return try ONNXLoader.load(contentsOf: url)
    } catch let error as ModelError {
      let message = error.message.contains(path) ? error.message : "\(path): \(error.message)"
      throw EvalError(.input, "--model: \(message)")
    } catch {
      throw EvalError(.input, "--model: cannot read \(path): \(error)")
    }
  }

  /// Learnable parameters: the element count of every constant tensor of the model as
  /// loaded (initializers and Constant nodes, before any folding).
  public static func parameterCount(of graph: Graph) -> Int {
    graph.constants.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
  }
}

/// An engine run a second time under another name, on another input tensor: the int8
/// engine on the `--preset` tensor (`int8-rgb`) beside itself on its own NV12 input path.
/// It shares the wrapped engine's kernels and buffers, so the two are never run at once.
final class SecondInputEngine: InferenceEngine {
  let name: String
  let wrapped: any InferenceEngine
  var inputShape: [Int] { wrapped.inputShape }
  var classCount: Int { wrapped.classCount }
  var versionInfo: [String: String] {
    wrapped.versionInfo.merging(
      ["input": "the first engine's tensor (\(wrapped.name) on the --preset input path)"],
      uniquingKeysWith: { _, new in new })
  }

  init(name: String, wrapping wrapped: any InferenceEngine) {
    self.name = name
    self.wrapped = wrapped
  }

  func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>) throws {
    try wrapped.run(input: input, output: output)
  }
}

extension EvalError {
  /// `error` from building or calibrating an engine as an input error `"<context>: <reason>"`
  /// (a ``ModelError`` by its message); an ``EvalError`` is kept as it is, since it already
  /// says what went wrong.
  init(modelFailure error: any Error, _ context: String) {
    switch error {
    case let error as EvalError: self = error
    case let error as ModelError: self.init(.input, "\(context): \(error.message)")
    default: self.init(.input, "\(context): \(error)")
    }
  }
}
