import Foundation

extension Int8Engine {
  /// The graph the int8 engine calibrates and runs: `GraphPasses.prepare`, then every
  /// GELU/Sigmoid/Tanh/HardSwish that preparation fused into a Conv or Gemm split off again
  /// as its own node.
  ///
  /// oneDNN's int8 convolution applies only clamps (ReLU, ReLU6, Clip) and the residual sum
  /// in its integer epilogue; with a smooth activation fused, the Conv had no int8 kernel and
  /// ran in float (FasterNet's every MLP). Split off, the Conv runs in int8 to codes of its
  /// own calibrated pre-activation tensor (named `<output>.preactivation`) and the
  /// activation runs as a 256-entry lookup table. Calibration and the engine both use this
  /// graph, so the new tensor is observed like any other.
  static func prepareForInt8(_ graph: Graph, batchSize: Int) throws -> Graph {
    let prepared = try GraphPasses.prepare(graph, batchSize: batchSize)
    let split = splittingNodes(
      prepared, tensorSuffix: ".preactivation", nodeSuffix: ".activation"
    ) { node in
      var postOps: [PostOp]
      switch node.op {
      case .conv(let c): postOps = c.postOps
      case .gemm(let g): postOps = g.postOps
      default: return nil
      }
      guard case .activation(let activation)? = postOps.last, hasLookupTable(activation) else {
        return nil
      }
      postOps.removeLast()
      var trimmed = node
      switch node.op {
      case .conv(var c):
        c.postOps = postOps
        trimmed.op = .conv(c)
      case .gemm(var g):
        g.postOps = postOps
        trimmed.op = .gemm(g)
      default: break
      }
      return (trimmed, .activation(activation), [])
    }
    return separatingResidualSums(split)
  }

  /// Every Conv whose only post-op is a residual sum split back into the Conv, writing codes
  /// of its own calibrated tensor (`<output>.presum`), and an integer Add of those codes and
  /// the residual's.
  ///
  /// Fused, the sum entered the Conv's requantisation unrounded, which no standard QDQ model
  /// expresses: onnxruntime runs such an exported `Conv → Add → QuantizeLinear` in float32
  /// (MLAS SGEMM), whose rounding differs from the integer accumulation next to every
  /// rounding boundary, and the differing codes spread through the following layers
  /// (FasterNet-T0: a fifth of the exported model's logits off by more than one LSB). Split,
  /// the export's `Conv → QuantizeLinear` and `Add → QuantizeLinear` become onnxruntime's
  /// integer QLinearConv and QLinearAdd, which the engine computes exactly (see
  /// `Int8AddTableKernel`). A sum followed by a clamp stays fused (the int8 Add has no clamp).
  static func separatingResidualSums(_ graph: Graph) -> Graph {
    splittingNodes(graph, tensorSuffix: ".presum", nodeSuffix: ".residual") { node in
      guard case .conv(var c) = node.op, c.postOps == [.sum], let operand = node.sumOperand
      else { return nil }
      var trimmed = node
      c.postOps = []
      trimmed.op = .conv(c)
      trimmed.inputs.removeLast()
      return (trimmed, .binary(.add), [operand])
    }
  }

  /// `graph` with every node that `split` takes apart replaced by two: the node as `split`
  /// trimmed it, now writing a new tensor named `<output><tensorSuffix>`, then a node
  /// `<name><nodeSuffix>` running `split`'s op on that tensor and its other inputs into the
  /// original output. `split` returns nil for nodes that stay as they are.
  private static func splittingNodes(
    _ graph: Graph, tensorSuffix: String, nodeSuffix: String,
    _ split: (Node) -> (trimmed: Node, op: Op, otherInputs: [ValueID])?
  ) -> Graph {
    var g = graph
    var nodes: [Node] = []
    nodes.reserveCapacity(g.nodes.count)
    for node in g.nodes {
      guard let output = node.outputs.first, let parts = split(node) else {
        nodes.append(node)
        continue
      }
      var trimmed = parts.trimmed
      var value = g.values[output]
      value.name += tensorSuffix
      let intermediate = g.addValue(value)
      trimmed.outputs[0] = intermediate
      nodes.append(trimmed)
      nodes.append(
        Node(
          name: node.name + nodeSuffix, op: parts.op, inputs: [intermediate] + parts.otherInputs,
          outputs: [output]))
    }
    g.nodes = nodes
    return g
  }

  /// Activations the engine evaluates by lookup table (see `Int8Lowering.lowerLookup`).
  static func hasLookupTable(_ activation: Activation) -> Bool {
    switch activation {
    case .sigmoid, .tanh, .hardSwish, .gelu(tanhApproximation: false): true
    default: false
    }
  }
}
