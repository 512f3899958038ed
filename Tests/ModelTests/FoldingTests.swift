import Foundation
import TestSupport
import Testing

@testable import Model

@Suite("Constant folding")
struct FoldingTests {
  @Test func constantSubgraphFoldsAndShapeOfStaticValueBecomesConstant() throws {
    // y = x @ transpose(a * b + a), and s = Shape(x) * 2 as a second output.
    var g = Graph(
      values: [], nodes: [], constants: [:], inputs: [],
      declaredInputShapes: [[.fixed(3), .fixed(2)]],
      outputs: [], opsetVersion: 13)
    let x = g.addValue(Value(name: "x", elementType: .float32, shape: [3, 2]))
    g.inputs = [x]
    let a = g.addConstant(name: "a", Tensor(shape: [2, 2], floats: [1, 2, 3, 4]))
    let b = g.addConstant(name: "b", Tensor(shape: [2, 2], floats: [2, 2, 0, 1]))
    let two = g.addConstant(name: "two", Tensor(shape: [], int64s: [2]))
    let ab = g.addValue(Value(name: "ab", elementType: .float32))
    let k = g.addValue(Value(name: "k", elementType: .float32))
    let kt = g.addValue(Value(name: "kt", elementType: .float32))
    let y = g.addValue(Value(name: "y", elementType: .float32))
    let s = g.addValue(Value(name: "s", elementType: .int64))
    let s2 = g.addValue(Value(name: "s2", elementType: .int64))
    g.nodes = [
      Node(name: "mul", op: .binary(.mul), inputs: [a, b], outputs: [ab]),
      Node(name: "add", op: .binary(.add), inputs: [ab, a], outputs: [k]),
      Node(name: "t", op: .transpose(perm: [1, 0]), inputs: [k], outputs: [kt]),
      Node(name: "mm", op: .matMul, inputs: [x, kt], outputs: [y]),
      Node(name: "shape", op: .shape(start: 0, end: nil), inputs: [x], outputs: [s]),
      Node(name: "twice", op: .binary(.mul), inputs: [s, two], outputs: [s2]),
    ]
    g.outputs = [y, s2]
    let folded = try GraphPasses.foldConstants(g)
    #expect(folded.nodes.map(\.name) == ["mm"])
    // a*b+a = [[3,6],[3,8]], transposed [[3,3],[6,8]].
    #expect(folded.constants[kt] == Tensor(shape: [2, 2], floats: [3, 3, 6, 8]))
    #expect(folded.constants[s2] == Tensor(shape: [2], int64s: [6, 4]))
    let out = try ReferenceEvaluator.run(
      try GraphPasses.inferShapes(folded),
      inputs: [Tensor(shape: [3, 2], floats: [1, 0, 0, 1, 1, 1])])
    #expect(out[0].floats == [3, 3, 6, 8, 9, 11])
    #expect(out[1].integers == [6, 4])
  }

  @Test func deadNodesAreRemoved() throws {
    var g = singleNodeGraph(.activation(.relu), input: [2])
    let dead = g.addValue(Value(name: "dead", elementType: .float32))
    g.nodes.append(
      Node(name: "unused", op: .activation(.tanh), inputs: [g.inputs[0]], outputs: [dead]))
    #expect(GraphPasses.eliminateDeadNodes(g).nodes.map(\.name) == ["node"])
  }
}
