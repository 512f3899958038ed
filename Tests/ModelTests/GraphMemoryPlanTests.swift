import Foundation
import TestSupport
import Testing

@testable import Model

@Suite("Memory plan")
struct GraphMemoryPlanTests {
  /// A chain x -> Relu -> Sigmoid -> Transpose -> Tanh -> ... built by hand.
  func chain(length: Int) -> Graph {
    var g = Graph(
      values: [], nodes: [], constants: [:], inputs: [], declaredInputShapes: [], outputs: [],
      opsetVersion: 13)
    var current = g.addValue(Value(name: "x", elementType: .float32))
    g.inputs = [current]
    g.declaredInputShapes = [[.fixed(2), .fixed(3), .fixed(5), .fixed(7)]]
    let ops: [Op] = [
      .activation(.relu), .transpose(perm: [0, 1, 3, 2]), .activation(.sigmoid), .erf,
    ]
    for i in 0..<length {
      let out = g.addValue(Value(name: "v\(i)", elementType: .float32))
      g.nodes.append(Node(name: "n\(i)", op: ops[i % ops.count], inputs: [current], outputs: [out]))
      current = out
    }
    g.outputs = [current]
    return g
  }

  /// Checks by construction that no two values live at the same time share bytes, apart
  /// from an in-place output taking over an input that dies at its node.
  func checkNoOverlap(_ g: Graph, _ plan: MemoryPlan) {
    var first: [ValueID: Int] = [:]
    var last: [ValueID: Int] = [:]
    for (i, n) in g.nodes.enumerated() {
      for v in n.outputs {
        first[v] = i
        last[v] = i
      }
      for v in n.inputs where first[v] != nil { last[v] = i }
    }
    for v in g.outputs { last[v] = g.nodes.count }
    let planned = Array(plan.offsets.keys)
    for a in planned {
      for b in planned where a < b {
        guard let fa = first[a], let la = last[a], let fb = first[b], let lb = last[b] else {
          continue
        }
        let liveTogether = fa <= lb && fb <= la
        // Handing a buffer over at one node is not a conflict: a dies exactly where b is born.
        let handOver = (la == fb && fa < fb) || (lb == fa && fb < fa)
        let (oa, ob) = (plan.offsets[a]!, plan.offsets[b]!)
        let overlap = oa < ob + plan.sizes[b]! && ob < oa + plan.sizes[a]!
        #expect(!(liveTogether && !handOver && overlap), "values \(a) and \(b) overlap while live")
        if overlap && handOver {
          let node = g.nodes[max(fa, fb)]
          #expect(MemoryPlan.mayRunInPlace(node.op) || node.sumOperand != nil)
        }
      }
    }
  }

  @Test func chainReusesBuffers() throws {
    let g = try GraphPasses.inferShapes(chain(length: 12))
    let plan = try MemoryPlan(g)
    let total = plan.sizes.values.reduce(0, +)
    #expect(plan.offsets.count == 12)
    #expect(plan.arenaSize < total / 3)
    #expect(plan.arenaSize >= 2 * 210 * 4)  // The transpose cannot run in place.
    checkNoOverlap(g, plan)
  }

  @Test(
    .requiresPython)
  func generatedModelsHaveNoOverlaps() throws {
    let (directory, cases) = try OpCases.generated.get()
    for c in cases {
      let graph = try ONNXLoader.load(
        contentsOf: directory.appendingPathComponent("\(c.name)/model.onnx"))
      let symbolic = graph.declaredInputShapes.first?.first.map { !$0.isFixed } ?? false
      let g = try GraphPasses.prepare(graph, batchSize: symbolic ? 2 : nil)
      let plan = try MemoryPlan(g)
      checkNoOverlap(g, plan)
      for n in g.nodes {
        if let s = n.sumOperand {
          #expect(plan.offsets[s] == plan.offsets[n.outputs[0]], "\(c.name): sum writes in place")
        }
      }
    }
  }
}

extension DeclaredDimension {
  var isFixed: Bool {
    if case .fixed = self { return true }
    return false
  }
}
