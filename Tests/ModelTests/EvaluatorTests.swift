import Dataset
import Foundation
import TestSupport
import Testing

@testable import Model

/// Builds a one-node graph: float input `x` of `shape`, constant extra inputs.
func singleNodeGraph(_ op: Op, input shape: [Int], constants: [Tensor] = [], outputs: Int = 1)
  -> Graph
{
  var g = Graph(
    values: [], nodes: [], constants: [:], inputs: [], declaredInputShapes: [], outputs: [],
    opsetVersion: 13)
  let x = g.addValue(Value(name: "x", elementType: .float32))
  g.inputs = [x]
  g.declaredInputShapes = [shape.map { .fixed($0) }]
  let extra = constants.enumerated().map { g.addConstant(name: "c\($0.offset)", $0.element) }
  let outs = (0..<outputs).map { g.addValue(Value(name: "y\($0)", elementType: .float32)) }
  g.nodes = [Node(name: "node", op: op, inputs: [x] + extra, outputs: outs)]
  g.outputs = outs
  return g
}

/// Runs a one-node graph on `values` after shape inference.
func evaluate(
  _ op: Op, _ shape: [Int], _ values: [Float], constants: [Tensor] = [], outputs: Int = 1
)
  throws -> [Tensor]
{
  let g = try GraphPasses.inferShapes(
    singleNodeGraph(op, input: shape, constants: constants, outputs: outputs))
  return try ReferenceEvaluator.run(g, inputs: [Tensor(shape: shape, floats: values)])
}

@Suite("Reference evaluator, hand-computed")
struct EvaluatorTests {
  let conv3x3 = Convolution(
    kernelShape: [], strides: [], pads: [1, 1, 1, 1], dilations: [], group: 1)

  @Test func convolutionWithBiasAndPadding() throws {
    // 3x3 ones kernel over a 3x3 ones image with padding 1: corners see 4, edges 6, centre 9.
    let w = Tensor(shape: [1, 1, 3, 3], floats: [Float](repeating: 1, count: 9))
    let b = Tensor(shape: [1], floats: [0.5])
    let y = try evaluate(
      .conv(conv3x3), [1, 1, 3, 3], [Float](repeating: 1, count: 9), constants: [w, b])
    #expect(y[0].shape == [1, 1, 3, 3])
    #expect(y[0].floats == [4.5, 6.5, 4.5, 6.5, 9.5, 6.5, 4.5, 6.5, 4.5])
  }

  @Test func postOpsApplyInOrder() throws {
    var c = Convolution(kernelShape: [1, 1], strides: [], pads: [], dilations: [], group: 1)
    c.postOps = [.activation(.relu), .activation(.clip(min: 0, max: 6))]
    let w = Tensor(shape: [1, 1, 1, 1], floats: [2])
    let y = try evaluate(.conv(c), [1, 1, 1, 4], [-1, 1, 2.5, 4], constants: [w])
    #expect(y[0].floats == [0, 2, 5, 6])
  }

  @Test func averagePoolCountIncludePad() throws {
    let p = Pooling(
      kernelShape: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [], ceilMode: false,
      countIncludePad: false)
    var q = p
    q.countIncludePad = true
    let x: [Float] = [1, 2, 3, 4]
    let exclude = try evaluate(.averagePool(p), [1, 1, 2, 2], x)
    let include = try evaluate(.averagePool(q), [1, 1, 2, 2], x)
    #expect(exclude[0].shape == [1, 1, 2, 2])
    #expect(exclude[0].floats == [1, 2, 3, 4])
    #expect(include[0].floats == [0.25, 0.5, 0.75, 1])
  }

  @Test func softmaxCoercedVersusAxis() throws {
    let x = [Float](repeating: 0, count: 8)
    let coerced = try evaluate(.softmax(axis: 1, coerceTo2D: true), [2, 2, 2], x)
    let axis = try evaluate(.softmax(axis: 1, coerceTo2D: false), [2, 2, 2], x)
    #expect(coerced[0].floats == [Float](repeating: 0.25, count: 8))
    #expect(axis[0].floats == [Float](repeating: 0.5, count: 8))
  }

  @Test func sliceWithNegativeStepAndClamping() throws {
    let y = try evaluate(
      .slice(starts: [-1], ends: [-100], axes: [0], steps: [-3]), [10], (0..<10).map(Float.init))
    #expect(y[0].floats == [9, 6, 3, 0])
  }

  @Test func padModes() throws {
    let reflect = try evaluate(.pad(mode: .reflect, pads: [2, 1], value: 0), [3], [1, 2, 3])
    let edge = try evaluate(.pad(mode: .edge, pads: [2, 1], value: 0), [3], [1, 2, 3])
    let constant = try evaluate(.pad(mode: .constant, pads: [2, 1], value: 7), [3], [1, 2, 3])
    #expect(reflect[0].floats == [3, 2, 1, 2, 3, 2])
    #expect(edge[0].floats == [1, 1, 1, 2, 3, 3])
    #expect(constant[0].floats == [7, 7, 1, 2, 3, 7])
  }

  @Test func gatherNegativeIndexAndSplit() throws {
    let gathered = try evaluate(
      .gather(axis: 1), [2, 3], [0, 1, 2, 3, 4, 5],
      constants: [Tensor(shape: [2], int64s: [-1, 0])])
    #expect(gathered[0].shape == [2, 2])
    #expect(gathered[0].floats == [2, 0, 5, 3])
    let parts = try evaluate(
      .split(axis: 1, sizes: [1, 2]), [2, 3], [0, 1, 2, 3, 4, 5], outputs: 2)
    #expect(parts.map(\.floats) == [[0, 3], [1, 2, 4, 5]])
  }

  @Test func gemmAlphaBetaTranspose() throws {
    // A^T (2x2) * B^T (2x1) * 2 + 3 * C.
    let g = Gemm(alpha: 2, beta: 3, transA: true, transB: true)
    let y = try evaluate(
      .gemm(g), [2, 2], [1, 2, 3, 4],
      constants: [Tensor(shape: [1, 2], floats: [1, 1]), Tensor(shape: [1], floats: [1])])
    // A^T = [[1,3],[2,4]]; A^T * [1,1]^T = [4, 6]; *2 + 3 = [11, 15].
    #expect(y[0].shape == [2, 1])
    #expect(y[0].floats == [11, 15])
  }

  @Test func quantizeDequantizeRoundTrip() throws {
    let scale = Tensor(shape: [], floats: [0.5])
    let zero = Tensor(shape: [], storage: .int8([1]))
    let q = try evaluate(
      .quantizeLinear(axis: 1), [5], [-100, -0.25, 0.25, 0.75, 100], constants: [scale, zero])
    #expect(q[0].storage == .int8([-128, 1, 1, 3, 127]))
  }

  @Test(
    .requiresPython)
  func referenceEngineRunsTheMiniNetLikeOnnxruntime() throws {
    let (directory, cases) = try OpCases.generated.get()
    let c = try #require(cases.first { $0.name == "mini_net_opset17" })
    let graph = try ONNXLoader.load(
      contentsOf: directory.appendingPathComponent("\(c.name)/model.onnx"))
    let input = try OpCases.inputs(directory, c)[0]
    let expected = try OpCases.expected(directory, c)[0]
    let engine = try ReferenceEngine(graph: graph, batchSize: 3)
    #expect(engine.name == "reference")
    #expect(engine.inputShape == [3, 3, 32, 32])
    #expect(engine.classCount == 10)
    var output = [Float](repeating: .nan, count: 30)
    let values = try #require(input.floats)
    try values.withUnsafeBufferPointer { i in
      try output.withUnsafeMutableBufferPointer { o in try engine.run(input: i, output: o) }
    }
    let (diff, tolerance) = OpCases.compare(Tensor(shape: [3, 10], floats: output), expected)
    #expect(diff <= tolerance)
  }
}
