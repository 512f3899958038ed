import Foundation

extension Int8Engine {
  /// Calibrates `graph` for int8: runs the float model (`FloatEngine`, observing every node
  /// of the prepared graph as it completes) on up to `imageCount` images and observes every
  /// activation the engine quantises (the graph input and every node output, i.e. Conv/Gemm
  /// outputs after their fused activation and residual sum, Add and pooling outputs), then
  /// picks thresholds by `settings.method`.
  ///
  /// `nextBatch` fills a batch of `batchSize` preprocessed images (the model's input layout)
  /// and returns how many it filled; 0 ends calibration. When fewer than `imageCount` images
  /// come, calibration uses them and records a warning. NaN or infinity in an activation is
  /// an error naming the tensor.
  ///
  /// Histograms are collected only when `settings.method` reads them (not for `max`, whose
  /// thresholds are the exact ranges either way), which makes `max` calibration several
  /// times cheaper.
  public static func calibrate(
    graph: Graph, batchSize: Int, imageCount: Int, settings: Int8Settings = Int8Settings(),
    threads: Int? = nil, nextBatch: (UnsafeMutableBufferPointer<Float>) throws -> Int
  ) throws -> Int8Calibration {
    try observe(
      graph: graph, batchSize: batchSize, imageCount: imageCount, threads: threads,
      collectsHistograms: settings.method.needsHistogram, nextBatch: nextBatch
    ).calibration(settings: settings, threads: threads)
  }

  /// The float pass of `calibrate` alone: statistics from which every method's calibration
  /// can be derived without running the float model again. `threads` is the float engine's
  /// thread count (nil: one per core). With `collectsHistograms` false only each tensor's
  /// range is kept: `calibration` then serves `max` alone and refuses the other methods.
  public static func observe(
    graph: Graph, batchSize: Int, imageCount: Int, threads: Int? = nil,
    collectsHistograms: Bool = true,
    nextBatch: (UnsafeMutableBufferPointer<Float>) throws -> Int
  ) throws -> Int8Observation {
    try observe(
      graph: graph, batchSize: batchSize, imageCount: imageCount, threads: threads,
      referenceEvaluator: false, collectsHistograms: collectsHistograms, nextBatch: nextBatch)
  }

  /// `observe`, with the float model run either by `FloatEngine` or, when
  /// `referenceEvaluator` is true, by the (slow, independent) reference evaluator node by
  /// node — kept to prove the two observe the same statistics.
  static func observe(
    graph: Graph, batchSize: Int, imageCount: Int, threads: Int?, referenceEvaluator: Bool,
    collectsHistograms: Bool = true, nextBatch: (UnsafeMutableBufferPointer<Float>) throws -> Int
  ) throws -> Int8Observation {
    guard imageCount > 0 else {
      throw QuantizationError.invalidParameter("calibration needs at least 1 image")
    }
    guard batchSize > 0 else {
      throw QuantizationError.invalidParameter("calibration batch size must be positive")
    }
    let prepared = try prepareForInt8(graph, batchSize: batchSize)
    let float =
      referenceEvaluator
      ? nil
      : try FloatEngine(
        graph: prepared, batchSize: batchSize, threads: threads, strict: false,
        requiresClassifierOutput: true, graphIsPrepared: true)
    guard prepared.inputs.count == 1, let output = prepared.outputs.first else {
      throw ModelError(.invalidGraph, "int8 calibration: expected one input and one output")
    }
    let inputShape = try prepared.shape(of: prepared.inputs[0])
    let perImageInput = inputShape.dropFirst().reduce(1, *)
    let perImageOutput = try prepared.shape(of: output).dropFirst().reduce(1, *)
    var observed = [prepared.inputs[0]]
    var observedOutputs = [[ValueID]](repeating: [], count: prepared.nodes.count)
    for (index, node) in prepared.nodes.enumerated() {
      for out in node.outputs
      where prepared.constants[out] == nil && prepared.values[out].elementType == .float32 {
        observed.append(out)
        observedOutputs[index].append(out)
      }
    }
    var session = try CalibrationSession(
      tensorNames: observed.map { prepared.values[$0].name }, requestedImageCount: imageCount,
      collectsHistograms: collectsHistograms)
    let observedSet = Set(observed)

    var batches: [(input: [Float], images: Int)] = []
    var reference: [Float] = []
    var buffer = [Float](repeating: 0, count: batchSize * perImageInput)
    var logits = [Float](repeating: 0, count: batchSize * perImageOutput)
    var scratch: [Float] = []
    while session.imageCount < imageCount {
      for i in buffer.indices { buffer[i] = 0 }
      let filled = try buffer.withUnsafeMutableBufferPointer { try nextBatch($0) }
      guard filled > 0 else { break }
      let images = min(filled, batchSize, imageCount - session.imageCount)
      if let float {
        try buffer.withUnsafeBufferPointer { x in
          try session.observe(
            prepared.values[prepared.inputs[0]].name,
            UnsafeBufferPointer(rebasing: x[0..<(images * perImageInput)]))
          try logits.withUnsafeMutableBufferPointer { y in
            try float.run(input: x, output: y) { index in
              for value in observedOutputs[index] {
                try float.withActivation(value, images: images, scratch: &scratch) {
                  try session.observe(prepared.values[value].name, $0)
                }
              }
            }
          }
        }
      } else {
        let outputs = try referenceActivations(
          prepared, input: Tensor(shape: inputShape, floats: buffer)
        ) { id, tensor in
          guard observedSet.contains(id), let values = tensor.floats else { return }
          let perImage = tensor.shape.first == batchSize ? values.count / batchSize : 0
          let count = perImage > 0 ? perImage * images : values.count
          try values.withUnsafeBufferPointer {
            try session.observe(
              prepared.values[id].name, UnsafeBufferPointer(rebasing: $0[0..<count]))
          }
        }
        guard let values = outputs.floats else {
          throw ModelError(.invalidGraph, "int8 calibration: the output is not float32")
        }
        logits = values
      }
      // Only `default` re-runs the calibration images (and it needs histograms too); `max`
      // spares the copies (60 MB for 100 images at 224x224).
      if collectsHistograms {
        reference += logits[0..<(images * perImageOutput)]
        batches.append((buffer, images))
      }
      session.endBatch(images: images)
    }
    if session.imageCount == 0 {
      throw QuantizationError.noCalibrationData(
        "no calibration image was provided (\(imageCount) requested)")
    }
    return Int8Observation(
      graph: graph, batchSize: batchSize, perImageOutput: perImageOutput, session: session,
      batches: batches, reference: reference, floatEngine: float)
  }
}

/// The statistics of a calibration run (see `Int8Engine.observe`), kept with the calibration
/// images and the float model's outputs on them so that every method can be derived and
/// `default` can compare candidates.
public struct Int8Observation {
  let graph: Graph
  let batchSize: Int
  let perImageOutput: Int
  let session: CalibrationSession
  let batches: [(input: [Float], images: Int)]
  let reference: [Float]
  /// The float engine that ran the prepared graph, handed on to the int8 engine's layer
  /// report so it need not build the same primitives again.
  let floatEngine: FloatEngine?

  /// Images observed.
  public var imageCount: Int { session.imageCount }

  /// Every observed tensor's statistics (histogram, range), in graph order.
  public var observers: [TensorObserver] { session.observers }

  /// Whether histograms were collected (every method available) or ranges only (`max`).
  public var collectsHistograms: Bool { session.collectsHistograms }

  /// The calibration by `settings.method` (and `settings.percentile`).
  public func calibration(settings: Int8Settings, threads: Int? = nil) throws -> Int8Calibration {
    // Checked here too, so `default` does not turn a misspelt name into failed candidates.
    try Int8Engine.checkFloatNodes(settings.floatNodes, in: graph)
    guard collectsHistograms || !settings.method.needsHistogram else {
      throw QuantizationError.invalidParameter(
        "calibration method '\(settings.method.rawValue)' reads activation histograms, but this "
          + "observation collected ranges only (observe with collectsHistograms: true)")
    }
    let imageCount = session.requestedImageCount
    let graph = self.graph
    let batchSize = self.batchSize
    let perImageOutput = self.perImageOutput
    var minimums: [String: Float] = [:]
    var maximums: [String: Float] = [:]
    for observer in session.observers {
      minimums[observer.name] = observer.minimum
      maximums[observer.name] = observer.maximum
    }

    func calibration(
      _ method: CalibrationMethod, _ thresholds: [String: Float],
      _ warnings: [CalibrationWarning], _ cosines: [String: Double] = [:]
    ) -> Int8Calibration {
      Int8Calibration(
        method: method, thresholds: thresholds, minimums: minimums, maximums: maximums,
        imageCount: session.imageCount, requestedImageCount: imageCount, warnings: warnings,
        candidateCosines: cosines)
    }
    if let method = settings.method.single {
      let (thresholds, warnings) = try session.thresholds(
        method, percentile: settings.percentile)
      return calibration(method, thresholds, warnings)
    }
    let selection = try session.selectDefault(percentile: settings.percentile) {
      method, thresholds in
      let engine = try Int8Engine(
        graph: graph, batchSize: batchSize, calibration: calibration(method, thresholds, []),
        settings: settings, threads: threads)
      var logits = [Float](repeating: 0, count: batchSize * perImageOutput)
      var quantized: [Float] = []
      for batch in batches {
        try batch.input.withUnsafeBufferPointer { x in
          try logits.withUnsafeMutableBufferPointer { y in try engine.run(input: x, output: y) }
        }
        quantized += logits[0..<(batch.images * perImageOutput)]
      }
      return Int8Engine.cosineSimilarity(reference, quantized)
    }
    var cosines: [String: Double] = [:]
    for (method, cosine) in selection.similarities { cosines[method.rawValue] = cosine }
    return calibration(selection.method, selection.thresholds, selection.warnings, cosines)
  }

}

extension Int8Engine {
  /// `calibrate` followed by `init(graph:batchSize:calibration:settings:threads:)`, with the
  /// engine's layer report reusing the float engine calibration built (same prepared graph,
  /// same batch size) instead of building its own. `calibrationThreads` is the float pass's
  /// thread count (the layer report's too), `threads` the int8 engine's; `calibrated` is
  /// called with the calibration's seconds before the engine is built.
  public static func calibratedEngine(
    graph: Graph, batchSize: Int, imageCount: Int, settings: Int8Settings,
    calibrationThreads: Int?, threads: Int?, calibrated: (Double) -> Void = { _ in },
    nextBatch: (UnsafeMutableBufferPointer<Float>) throws -> Int
  ) throws -> Int8Engine {
    let start = Date()
    let observation = try observe(
      graph: graph, batchSize: batchSize, imageCount: imageCount, threads: calibrationThreads,
      collectsHistograms: settings.method.needsHistogram, nextBatch: nextBatch)
    let calibration = try observation.calibration(
      settings: settings, threads: calibrationThreads)
    calibrated(Date().timeIntervalSince(start))
    let engine = try Int8Engine(
      graph: graph, batchSize: batchSize, calibration: calibration, settings: settings,
      threads: threads)
    engine.floatEngine = observation.floatEngine
    return engine
  }
}

extension Int8Settings.Method {
  /// Whether the method reads activation histograms: all but `max` (`default` tries
  /// percentile and KL among its candidates).
  var needsHistogram: Bool { single?.needsHistogram ?? true }
}

extension Int8Engine {
  /// Compares every quantised node's output with the float model's (`FloatEngine`, built on
  /// the first call) on one batch of images (`images` of them valid): SQNR and cosine, worst
  /// first. Both engines hold rank-4 activations channels-last, so the comparison runs in
  /// that order without permuting.
  public func layerReport(input: UnsafeBufferPointer<Float>, images: Int) throws -> LayerReport {
    let batch = inputShape[0]
    guard images > 0, images <= batch else {
      throw ModelError(.invalidGraph, "layer report: \(images) images for a batch of \(batch)")
    }
    let float: FloatEngine
    if let existing = floatEngine {
      float = existing
    } else {
      float = try FloatEngine(
        graph: graph, batchSize: batch, threads: threads, strict: false,
        requiresClassifierOutput: true, graphIsPrepared: true)
      floatEngine = float
    }
    // The float engine runs this engine's prepared graph; values are matched by name.
    var compared: [String: Int] = [:]
    for (index, node) in graph.nodes.enumerated() where nodeIsQuantized[index] {
      compared[graph.values[node.outputs[0]].name] = index
    }
    // The float activations of the compared values, first `images` images.
    var reference: [Int: [Float]] = [:]
    var scratch: [Float] = []
    var logits = [Float](repeating: 0, count: batch * classCount)
    try logits.withUnsafeMutableBufferPointer { y in
      try float.run(input: input, output: y) { index in
        for out in float.graph.nodes[index].outputs {
          guard let mine = compared[float.graph.values[out].name] else { continue }
          reference[mine] = try float.withActivation(out, images: images, scratch: &scratch) {
            Array($0)
          }
        }
      }
    }
    var layers: [LayerQuality] = []
    try logits.withUnsafeMutableBufferPointer { y in
      try run(input: input, output: y) { index, codes in
        guard self.nodeIsQuantized[index], let x = reference[index] else { return }
        let value = self.graph.nodes[index].outputs[0]
        // One pass over the float activations and the codes, dequantised on the fly.
        var agreement = Agreement()
        if value == self.graph.outputs[0], self.logitsAreFloat {
          let logits = codes.assumingMemoryBound(to: Float.self)
          for (i, a) in x.enumerated() { agreement.add(a, logits[i]) }
        } else if let p = self.params[value] {
          try Self.compare(x, codes: codes, params: p, into: &agreement)
        } else {
          for a in x { agreement.add(a, 0) }
        }
        let node = self.graph.nodes[index]
        let range = self.weightRanges[index]
        layers.append(
          LayerQuality(
            node: node.name, op: node.op.name,
            sqnrDB: agreement.sqnrDB, cosine: agreement.cosine, weightMinimum: range?.0,
            weightMaximum: range?.1, activationScale: self.params[value]?.scale ?? 1))
      }
    }
    layers.sort { $0.sqnrDB < $1.sqnrDB }
    return LayerReport(imageCount: images, layers: layers)
  }

  /// Adds `x[i]` against `(code[i] − zp) · scale` to `agreement`, element by element in the
  /// codes' (engine) order.
  static func compare(
    _ x: [Float], codes: UnsafeRawPointer, params: QuantParams, into agreement: inout Agreement
  ) throws {
    let scale = params.scale
    let zp = params.zeroPoint
    func add<Code: FixedWidthInteger>(_: Code.Type) {
      let input = codes.assumingMemoryBound(to: Code.self)
      x.withUnsafeBufferPointer { x in
        for i in x.indices { agreement.add(x[i], Float(Int32(input[i]) - zp) * scale) }
      }
    }
    switch params.type {
    case .int8: add(Int8.self)
    case .uint8: add(UInt8.self)
    case .int16: add(Int16.self)
    case .int32:
      throw QuantizationError.invalidParameter("activations of type \(params.type.rawValue)")
    }
  }

  /// The sums behind SQNR and cosine similarity of a reference `a` and a candidate `b`, in
  /// float64 and element order (the same sums `cosineSimilarity` forms).
  struct Agreement {
    var aa = 0.0
    var bb = 0.0
    var ab = 0.0
    var noise = 0.0

    mutating func add(_ a: Float, _ b: Float) {
      aa += Double(a) * Double(a)
      bb += Double(b) * Double(b)
      ab += Double(a) * Double(b)
      noise += Double(a - b) * Double(a - b)
    }

    /// 10·log10(signal / noise) (infinite without noise).
    var sqnrDB: Double { noise == 0 ? .infinity : 10 * log10(aa / noise) }
    /// As `cosineSimilarity`: 1 when both are zero vectors, NaN when only one is.
    var cosine: Double {
      if aa == 0, bb == 0 { return 1 }
      return ab / (aa.squareRoot() * bb.squareRoot())
    }
  }

  /// Cosine similarity in float64 (1 when both are zero vectors, NaN when only one is).
  static func cosineSimilarity(_ x: [Float], _ y: [Float]) -> Double {
    var dot = 0.0
    var xx = 0.0
    var yy = 0.0
    for (a, b) in zip(x, y) {
      dot += Double(a) * Double(b)
      xx += Double(a) * Double(a)
      yy += Double(b) * Double(b)
    }
    if xx == 0, yy == 0 { return 1 }
    return dot / (xx.squareRoot() * yy.squareRoot())
  }

  /// Evaluates a prepared graph node by node with the reference evaluator, showing every node
  /// output to `visit` before it is freed; returns the first graph output.
  static func referenceActivations(
    _ graph: Graph, input: Tensor, visit: (ValueID, Tensor) throws -> Void
  ) throws -> Tensor {
    try withoutActuallyEscaping(visit) {
      try ReferenceEvaluator.run(graph, inputs: [input], visit: $0)[0]
    }
  }
}
