import Foundation

/// The reference evaluator as an `InferenceEngine` named `reference`: slow, plain Swift, for
/// checking the fast engines on a few images.
public final class ReferenceEngine: InferenceEngine {
  /// Always `reference`.
  public let name = "reference"
  /// `[batch, channels, height, width]` as the model declares it, batch overridden.
  public let inputShape: [Int]
  /// Elements per image of the first output.
  public let classCount: Int
  /// Identifies the plain-Swift evaluator.
  public var versionInfo: [String: String] { ["engine": "reference (plain Swift)"] }
  /// The prepared graph this engine runs.
  public let graph: Graph

  /// Prepares `graph` (shape inference, folding, fusions) for `batchSize` images.
  public init(graph: Graph, batchSize: Int) throws {
    let prepared = try GraphPasses.prepare(graph, batchSize: batchSize)
    guard prepared.inputs.count == 1, prepared.outputs.count >= 1 else {
      throw ModelError(.invalidGraph, "expected one input and at least one output")
    }
    let input = try prepared.shape(of: prepared.inputs[0])
    let output = try prepared.shape(of: prepared.outputs[0])
    guard prepared.values[prepared.inputs[0]].elementType == .float32, input.first == batchSize,
      output.first == batchSize, output.count >= 2
    else {
      throw ModelError(
        .invalidGraph,
        "expected float32 input [\(batchSize), …] and logits [\(batchSize), classes], got \(input) -> \(output)"
      )
    }
    self.graph = prepared
    self.inputShape = input
    self.classCount = output.dropFirst().reduce(1, *)
  }

  /// Runs the batch through `ReferenceEvaluator` (allocates; this engine is for checking).
  public func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>)
    throws
  {
    guard input.count == inputElementCount, output.count == batchSize * classCount else {
      throw ModelError(
        .invalidGraph, "buffer sizes \(input.count)/\(output.count) do not match the engine")
    }
    let result = try ReferenceEvaluator.run(
      graph, inputs: [Tensor(shape: inputShape, floats: Array(input))])
    guard let logits = result[0].floats, logits.count == output.count else {
      throw ModelError(.invalidGraph, "the model's output is not float32 logits")
    }
    _ = output.update(fromContentsOf: logits)
  }
}
