import Foundation

/// Where the float engine keeps one activation: its own buffer (rank 4 channels-last, the
/// engine's layout), or — for the untouched half of a partial convolution's Split, which the
/// engine never materialises, and for both halves of the convolution when
/// `PartialConvolutionKernel` or a Winograd convolution runs it — a channel range of the
/// split's source or the concat's output.
enum FloatActivation {
  case buffer(UnsafeMutablePointer<Float>, count: Int)
  /// Channels `first..<first + width` of a channels-last source of `channels` channels and
  /// `pixels` positions (all images).
  case channelSlice(
    UnsafeMutablePointer<Float>, pixels: Int, channels: Int, first: Int, width: Int)

  /// Elements of all images.
  var count: Int {
    switch self {
    case .buffer(_, let count): count
    case .channelSlice(_, let pixels, _, _, let width): pixels * width
    }
  }

  /// The activations of every non-constant float value the engine writes (and of the graph
  /// input, in the engine's copy).
  static func locate(in graph: Graph, builder: FloatEngineBuilder) -> [ValueID: FloatActivation] {
    var result: [ValueID: FloatActivation] = [:]
    func elements(_ value: ValueID) -> Int? {
      (try? graph.shape(of: value)).map { $0.reduce(1, *) }
    }
    var values = graph.inputs
    for node in graph.nodes { values += node.outputs }
    for value in values
    where graph.constants[value] == nil && graph.values[value].elementType == .float32 {
      guard let pointer = builder.activationPointer(value), let count = elements(value) else {
        continue
      }
      result[value] = .buffer(pointer.assumingMemoryBound(to: Float.self), count: count)
    }
    let consumers = graph.consumers()
    for partial in builder.partialConvolutions {
      guard
        let split = consumers[partial.source].map({ graph.nodes[$0] }).first(where: {
          $0.outputs.first == partial.convolved
        }), split.outputs.count == 2,
        let shape = try? graph.shape(of: partial.source), shape.count == 4,
        let source = builder.activationPointer(partial.source)
      else { continue }
      let pixels = shape[0] * shape[2] * shape[3]
      result[split.outputs[1]] = .channelSlice(
        source.assumingMemoryBound(to: Float.self), pixels: pixels, channels: shape[1],
        first: partial.channels, width: shape[1] - partial.channels)
      // The kernel reads the convolved channels in place and writes the convolution's output
      // straight into the concat's first channels; the Winograd lowering's dense copies are
      // channel-blocked, so both are read from those channels too (the source is intact until
      // the concat runs).
      if partial.outputLivesInConcat, let output = builder.activationPointer(partial.output) {
        result[partial.convolved] = .channelSlice(
          source.assumingMemoryBound(to: Float.self), pixels: pixels, channels: shape[1],
          first: 0, width: partial.channels)
        result[partial.convolutionOutput] = .channelSlice(
          output.assumingMemoryBound(to: Float.self), pixels: pixels, channels: shape[1],
          first: 0, width: partial.channels)
      }
    }
    return result
  }
}

extension FloatEngine {
  /// Shows `body` the first `images` images of `value` as computed by the last run, in the
  /// engine's layout (rank 4 channels-last). A value held as a channel slice is gathered into
  /// `scratch` (grown when too small, so steady-state calls allocate nothing). Call it from
  /// `run`'s `afterNode` for the node producing `value`: the buffer may be reused later.
  func withActivation<Result>(
    _ value: ValueID, images: Int, scratch: inout [Float],
    _ body: (UnsafeBufferPointer<Float>) throws -> Result
  ) throws -> Result {
    guard let activation = try observationPlan().activations[value] else {
      throw ModelError(
        .missingValue, "float engine: value '\(graph.values[value].name)' is not observable")
    }
    let batch = max(inputShape[0], 1)
    let images = min(max(images, 0), batch)
    switch activation {
    case .buffer(let pointer, let count):
      return try body(UnsafeBufferPointer(start: pointer, count: count / batch * images))
    case .channelSlice(let source, let pixels, let channels, let first, let width):
      let rows = pixels / batch * images
      if scratch.count < rows * width {
        scratch = [Float](repeating: 0, count: rows * width)
      }
      return try scratch.withUnsafeMutableBufferPointer { gathered in
        for row in 0..<rows {
          let from = source + row * channels + first
          for c in 0..<width { gathered[row * width + c] = from[c] }
        }
        return try body(UnsafeBufferPointer(rebasing: gathered[0..<(rows * width)]))
      }
    }
  }
}
