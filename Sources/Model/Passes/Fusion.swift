/// Fusions. Each one rewrites a pattern only when the intermediate values it removes are read
/// by nothing else and are not graph outputs, so the graph's outputs are unchanged (up to
/// float rounding where documented).
extension GraphPasses {
  /// Collects the analysis every fusion needs and applies node rewrites at the end.
  private struct Rewriter {
    var graph: Graph
    let consumers: [[Int]]
    let producers: [Int?]
    let outputs: Set<ValueID>
    var removed = Set<Int>()

    init(_ graph: Graph) {
      self.graph = graph
      consumers = graph.consumers()
      producers = graph.producers()
      outputs = Set(graph.outputs)
    }

    /// The only node reading `value`, if it is read exactly once and is not a graph output.
    func soleConsumer(_ value: ValueID) -> Int? {
      guard !outputs.contains(value), consumers[value].count == 1,
        !removed.contains(consumers[value][0])
      else { return nil }
      return consumers[value][0]
    }

    func producer(_ value: ValueID) -> Int? {
      guard let p = producers[value], !removed.contains(p) else { return nil }
      return p
    }

    /// True when `value` is a constant scalar within 1e-6 relative of `target`.
    func isScalar(_ value: ValueID, _ target: Float) -> Bool {
      guard let t = graph.constants[value], t.elementCount == 1, let v = t.floats?.first else {
        return false
      }
      return abs(v - target) <= 1e-6 * abs(target)
    }

    /// For a binary node, the operand that is not `value` (nil if the node is not `op`).
    func other(_ index: Int, _ op: BinaryOperator, _ value: ValueID) -> ValueID? {
      let node = graph.nodes[index]
      guard node.op == .binary(op), node.inputs.count == 2 else { return nil }
      if node.inputs[0] == value { return node.inputs[1] }
      if node.inputs[1] == value { return node.inputs[0] }
      return nil
    }

    func finish() -> Graph {
      var g = graph
      g.nodes = g.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
      return g
    }
  }

  /// Replaces `x * 0.5 * (1 + erf(x / sqrt 2))` (any association of the two Muls, Div by
  /// sqrt 2 or Mul by 1/sqrt 2) with one exact `Gelu`.
  public static func fuseGelu(_ graph: Graph) throws -> Graph {
    var r = Rewriter(graph)
    let half: Float = 0.5
    for (e, erf) in graph.nodes.enumerated() where erf.op == .erf {
      guard let s = r.producer(erf.inputs[0]), r.soleConsumer(erf.inputs[0]) == e else { continue }
      let scaled = graph.nodes[s]
      var x: ValueID?
      if scaled.op == .binary(.div), r.isScalar(scaled.inputs[1], Float(2.0.squareRoot())) {
        x = scaled.inputs[0]
      } else if scaled.op == .binary(.mul) {
        if r.isScalar(scaled.inputs[1], Float(0.5.squareRoot())) {
          x = scaled.inputs[0]
        } else if r.isScalar(scaled.inputs[0], Float(0.5.squareRoot())) {
          x = scaled.inputs[1]
        }
      }
      guard let x, let a = r.soleConsumer(erf.outputs[0]),
        let one = r.other(a, .add, erf.outputs[0]), r.isScalar(one, 1),
        let m1 = r.soleConsumer(graph.nodes[a].outputs[0]),
        let o = r.other(m1, .mul, graph.nodes[a].outputs[0])
      else { continue }
      var removedNodes = [s, e, a]
      var final: Int?
      if o == x || r.isScalar(o, half) {
        // (x * (1 + erf)) * 0.5, or (0.5 * (1 + erf)) * x.
        if let m2 = r.soleConsumer(graph.nodes[m1].outputs[0]),
          let p = r.other(m2, .mul, graph.nodes[m1].outputs[0]),
          o == x ? r.isScalar(p, half) : p == x
        {
          removedNodes.append(m1)
          final = m2
        }
      } else if let h = r.producer(o), r.soleConsumer(o) == m1,
        let hx = r.other(h, .mul, x), r.isScalar(hx, half)
      {
        // (x * 0.5) * (1 + erf).
        removedNodes.append(h)
        final = m1
      }
      guard let final else { continue }
      r.removed.formUnion(removedNodes)
      let old = r.graph.nodes[final]
      r.graph.nodes[final] = Node(
        name: old.name, op: .activation(.gelu(tanhApproximation: false)), inputs: [x],
        outputs: old.outputs)
    }
    return r.finish()
  }

  /// Turns `MatMul(A, B) + C` with 2-D A, constant 2-D B and constant C of shape `[N]` or
  /// `[1, N]` into `Gemm(A, B, C)` (the same sums in float).
  public static func fuseMatMulAdd(_ graph: Graph) throws -> Graph {
    var r = Rewriter(graph)
    for (m, node) in graph.nodes.enumerated() where node.op == .matMul {
      guard let a = r.soleConsumer(node.outputs[0]),
        let c = r.other(a, .add, node.outputs[0]), let ct = graph.constants[c], ct.floats != nil,
        let bt = graph.constants[node.inputs[1]], bt.shape.count == 2,
        graph.values[node.inputs[0]].shape?.count == 2,
        ct.shape == [bt.shape[1]] || ct.shape == [1, bt.shape[1]]
      else { continue }
      r.removed.insert(m)
      let add = r.graph.nodes[a]
      r.graph.nodes[a] = Node(
        name: add.name, op: .gemm(Gemm()), inputs: [node.inputs[0], node.inputs[1], c],
        outputs: add.outputs)
    }
    return r.finish()
  }

  /// Folds an inference BatchNormalization with constant statistics into the preceding Conv
  /// (`W' = W * s`, `b' = (b - mean) * s + beta`, `s = gamma / sqrt(var + eps)`) when the
  /// Conv's output feeds only the BN; otherwise turns it into a `scaleShift`. Rounding
  /// differs from the unfused graph by a few ulps.
  public static func foldBatchNormalization(_ graph: Graph) throws -> Graph {
    var r = Rewriter(graph)
    for (b, bn) in graph.nodes.enumerated() {
      guard case .batchNormalization(let epsilon) = bn.op,
        let gamma = r.graph.constants[bn.inputs[1]]?.floats,
        let beta = r.graph.constants[bn.inputs[2]]?.floats,
        let mean = r.graph.constants[bn.inputs[3]]?.floats,
        let variance = r.graph.constants[bn.inputs[4]]?.floats
      else { continue }
      let scale = (0..<gamma.count).map { gamma[$0] / (variance[$0] + epsilon).squareRoot() }
      let shift = (0..<gamma.count).map { beta[$0] - mean[$0] * scale[$0] }
      if let c = r.producer(bn.inputs[0]), r.soleConsumer(bn.inputs[0]) == b,
        case .conv(let conv) = r.graph.nodes[c].op, conv.postOps.isEmpty,
        let wt = r.graph.constants[r.graph.nodes[c].inputs[1]], let w = wt.floats,
        wt.shape.first == scale.count
      {
        let node = r.graph.nodes[c]
        var bias = [Float](repeating: 0, count: scale.count)
        if let bid = node.convolutionBias {
          guard let bv = r.graph.constants[bid]?.floats else { continue }
          bias = bv
        }
        let per = w.count / scale.count
        let newW = w.enumerated().map { $0.element * scale[$0.offset / per] }
        let newB = (0..<scale.count).map { (bias[$0] - mean[$0]) * scale[$0] + beta[$0] }
        let wid = r.graph.addConstant(
          name: node.name + ".folded_weight", Tensor(shape: wt.shape, floats: newW))
        let bid = r.graph.addConstant(
          name: node.name + ".folded_bias", Tensor(shape: [scale.count], floats: newB))
        r.graph.nodes[c].inputs = [node.inputs[0], wid, bid]
        r.graph.nodes[c].outputs = bn.outputs
        r.removed.insert(b)
      } else {
        let sid = r.graph.addConstant(
          name: bn.name + ".scale", Tensor(shape: [scale.count], floats: scale))
        let tid = r.graph.addConstant(
          name: bn.name + ".shift", Tensor(shape: [scale.count], floats: shift))
        r.graph.nodes[b] = Node(
          name: bn.name, op: .scaleShift, inputs: [bn.inputs[0], sid, tid], outputs: bn.outputs)
      }
    }
    return r.finish()
  }

  /// Appends an activation (Relu, Clip, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh,
  /// Gelu) to the post-ops of the Conv or Gemm whose output only it reads. Exact in float.
  public static func fuseActivations(_ graph: Graph) throws -> Graph {
    var r = Rewriter(graph)
    for (i, node) in graph.nodes.enumerated() {
      guard case .activation(let activation) = node.op, let p = r.producer(node.inputs[0]),
        r.soleConsumer(node.inputs[0]) == i
      else { continue }
      switch r.graph.nodes[p].op {
      case .conv(var c):
        c.postOps.append(.activation(activation))
        r.graph.nodes[p].op = .conv(c)
      case .gemm(var g):
        g.postOps.append(.activation(activation))
        r.graph.nodes[p].op = .gemm(g)
      default: continue
      }
      r.graph.nodes[p].outputs = node.outputs
      r.removed.insert(i)
    }
    return r.finish()
  }

  /// Fuses `Add(Conv(x), s)` into the Conv as a `.sum` post-op reading `s` (appended as the
  /// Conv's last input). Conditions, which let an engine accumulate into `s`'s buffer in
  /// place: the Conv output is read only by the Add; `s` has the output's exact shape (no
  /// broadcasting); `s` is computed by a node BEFORE the Conv (not a graph input or a
  /// constant), is not an input of the Conv itself, is not a graph output, and no node
  /// other than the Add reads it after the Conv's position (it dies at the fused node, so
  /// overwriting it there is invisible). Exact in float (the same single addition).
  public static func fuseResidualAdd(_ graph: Graph) throws -> Graph {
    var r = Rewriter(graph)
    for (i, add) in graph.nodes.enumerated() where add.op == .binary(.add) {
      for (k, s) in [(0, add.inputs[1]), (1, add.inputs[0])] {
        let convOut = add.inputs[k]
        guard convOut != s, let c = r.producer(convOut), r.soleConsumer(convOut) == i,
          case .conv(var conv) = r.graph.nodes[c].op, !conv.postOps.contains(.sum),
          // The raw producer index: when it is an Add fused earlier in this pass (the
          // previous residual block), the conv that now writes `s` sits before it, so the
          // order still holds.
          let sp = r.producers[s], sp < c, !r.outputs.contains(s),
          r.consumers[s].allSatisfy({ $0 < c || $0 == i }), !r.graph.nodes[c].inputs.contains(s),
          let shape = graph.values[s].shape, shape == graph.values[convOut].shape,
          shape == graph.values[add.outputs[0]].shape, graph.values[s].elementType == .float32
        else { continue }
        conv.postOps.append(.sum)
        r.graph.nodes[c].op = .conv(conv)
        r.graph.nodes[c].inputs.append(s)
        r.graph.nodes[c].outputs = add.outputs
        r.removed.insert(i)
        break
      }
    }
    return r.finish()
  }
}
