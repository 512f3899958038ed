import Foundation
import TestSupport
import Testing

@testable import Model

@Suite(
  "Fusions",
  .enabled(
    if: TestEnvironment.pythonAvailable, Comment(rawValue: TestEnvironment.pythonMissingMessage)))
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
