import Foundation
import TestSupport
import Testing

@testable import Model

@Suite(
  "Fusions",
  .requiresPython)
struct FusionTests {
  func prepared(_ name: String) throws -> Graph {
    let (directory, _) = try OpCases.generated.get()
    let graph = try ONNXLoader.load(
      contentsOf: directory.appendingPathComponent("\(name)/model.onnx"))
    return try GraphPasses.prepare(graph)
  }

  @Test func convBatchNormReluBecomesOneConvWithReluPostOp() throws {
    let g = try prepared("conv_bn_relu")
    #expect(g.nodes.count == 1)
    guard case .conv(let c) = g.nodes[0].op else {
      Issue.record("not a conv")
      return
    }
    #expect(c.postOps == [.activation(.relu)])
    #expect(g.nodes[0].convolutionBias != nil)
    #expect(g.nodes[0].outputs == g.outputs)
  }

  @Test func relu6ClipBecomesClipPostOp() throws {
    let g = try prepared("conv_bn_clip6_opset9")
    guard case .conv(let c) = g.nodes.first?.op else {
      Issue.record("not a conv")
      return
    }
    #expect(c.postOps == [.activation(.clip(min: 0, max: 6))])
  }

  @Test func residualAddBecomesSumPostOpThenRelu() throws {
    let g = try prepared("residual_block")
    #expect(g.nodes.count == 3)
    guard case .conv(let first) = g.nodes[0].op, case .conv(let last) = g.nodes[2].op else {
      Issue.record("expected convs")
      return
    }
    #expect(first.postOps == [.activation(.relu)])
    #expect(last.postOps == [.sum, .activation(.relu)])
    // The sum operand is the first block's output, computed before and dying at the fusion.
    #expect(g.nodes[2].sumOperand == g.nodes[0].outputs[0])
    #expect(g.nodes[2].inputs.count == 3)
  }

  @Test func residualOperandReadLaterIsNotFused() throws {
    let g = try prepared("residual_operand_alive")
    #expect(g.nodes.map(\.op.name) == ["Conv", "Conv", "Add", "Mul"])
    #expect(g.nodes.allSatisfy { $0.sumOperand == nil })
  }

  @Test func geluPatternsBecomeOneGelu() throws {
    for name in ["gelu_pattern_div", "gelu_pattern_half_first", "gelu_pattern_half_inner"] {
      let g = try prepared(name)
      #expect(g.nodes.map(\.op) == [.activation(.gelu(tanhApproximation: false))], "\(name)")
    }
    let gemm = try prepared("gemm_gelu_pattern")
    #expect(gemm.nodes.map(\.op.postOps) == [[.activation(.gelu(tanhApproximation: false))]])
  }

  @Test func matMulAddBecomesGemm() throws {
    let g = try prepared("matmul_add_to_gemm")
    #expect(g.nodes.map(\.op) == [.gemm(Gemm())])
    #expect(g.nodes[0].inputs.count == 3)
  }

  @Test func standaloneBatchNormBecomesScaleShift() throws {
    let g = try prepared("batchnorm_standalone")
    #expect(g.nodes.map(\.op) == [.scaleShift])
  }

  @Test func shapeChainFoldsToConstantReshape() throws {
    let g = try prepared("reshape_shape_chain")
    #expect(g.nodes.map(\.op) == [.reshape(shape: [2, 396], allowZero: false)])
    #expect(g.nodes[0].inputs.count == 1)
  }
}

@Suite("Residual sum fusion conditions")
struct FusionConditionTests {
  /// x -> s = Relu(x); c = Conv(x); [m = Sigmoid(s) before or after the Conv];
  /// a = Add(c, s); y = Add(a, m).
  func graph(sigmoidBeforeConv: Bool) -> Graph {
    var g = Graph(
      values: [], nodes: [], constants: [:], inputs: [],
      declaredInputShapes: [[.fixed(1), .fixed(2), .fixed(3), .fixed(3)]], outputs: [],
      opsetVersion: 13)
    let x = g.addValue(Value(name: "x", elementType: .float32))
    g.inputs = [x]
    let w = g.addConstant(
      name: "w", Tensor(shape: [2, 2, 1, 1], floats: [1, -2, 0.5, 3]))
    let names = ["s", "c", "m", "a", "y"]
    let v = names.map { g.addValue(Value(name: $0, elementType: .float32)) }
    let conv = Convolution(kernelShape: [1, 1], strides: [], pads: [], dilations: [], group: 1)
    let relu = Node(name: "relu", op: .activation(.relu), inputs: [x], outputs: [v[0]])
    let convNode = Node(name: "conv", op: .conv(conv), inputs: [x, w], outputs: [v[1]])
    let sigmoid = Node(name: "sigmoid", op: .activation(.sigmoid), inputs: [v[0]], outputs: [v[2]])
    let add = Node(name: "add", op: .binary(.add), inputs: [v[1], v[0]], outputs: [v[3]])
    let final = Node(name: "final", op: .binary(.add), inputs: [v[3], v[2]], outputs: [v[4]])
    g.nodes =
      sigmoidBeforeConv
      ? [relu, sigmoid, convNode, add, final] : [relu, convNode, sigmoid, add, final]
    g.outputs = [v[4]]
    return g
  }

  @Test(arguments: [true, false])
  func sumFusesOnlyWhenNoLaterReader(sigmoidBeforeConv: Bool) throws {
    let g = try GraphPasses.inferShapes(graph(sigmoidBeforeConv: sigmoidBeforeConv))
    let fused = try GraphPasses.fuseResidualAdd(g)
    let sums = fused.nodes.filter { $0.sumOperand != nil }.count
    #expect(sums == (sigmoidBeforeConv ? 1 : 0))
    let input = Tensor(shape: [1, 2, 3, 3], floats: (0..<18).map { Float($0 % 7) - 3 })
    let expected = try ReferenceEvaluator.run(g, inputs: [input])
    #expect(try ReferenceEvaluator.run(fused, inputs: [input]) == expected)
    // The plan writes the fused Conv's output over its sum operand.
    let plan = try MemoryPlan(fused)
    for node in fused.nodes {
      if let s = node.sumOperand { #expect(plan.offsets[s] == plan.offsets[node.outputs[0]]) }
    }
  }
}
