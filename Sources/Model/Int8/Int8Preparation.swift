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
    var prepared = try GraphPasses.prepare(graph, batchSize: batchSize)
    var nodes: [Node] = []
    nodes.reserveCapacity(prepared.nodes.count)
    for var node in prepared.nodes {
      var postOps: [PostOp]
      switch node.op {
      case .conv(let c): postOps = c.postOps
      case .gemm(let g): postOps = g.postOps
      default:
        nodes.append(node)
        continue
      }
      guard case .activation(let activation)? = postOps.last, hasLookupTable(activation),
        let output = node.outputs.first
      else {
        nodes.append(node)
        continue
      }
      postOps.removeLast()
      switch node.op {
      case .conv(var c):
        c.postOps = postOps
        node.op = .conv(c)
      case .gemm(var g):
        g.postOps = postOps
        node.op = .gemm(g)
      default: break
      }
      var value = prepared.values[output]
      value.name += ".preactivation"
      let preactivation = prepared.addValue(value)
      node.outputs[0] = preactivation
      nodes.append(node)
      nodes.append(
        Node(
          name: node.name + ".activation", op: .activation(activation), inputs: [preactivation],
          outputs: [output]))
    }
    prepared.nodes = nodes
    return separatingResidualSums(prepared)
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
    var g = graph
    var nodes: [Node] = []
    nodes.reserveCapacity(g.nodes.count)
    for var node in g.nodes {
      guard case .conv(var c) = node.op, c.postOps == [.sum], let operand = node.sumOperand,
        let output = node.outputs.first
      else {
        nodes.append(node)
        continue
      }
      c.postOps = []
      node.op = .conv(c)
      node.inputs.removeLast()
      var value = g.values[output]
      value.name += ".presum"
      let presum = g.addValue(value)
      node.outputs[0] = presum
      nodes.append(node)
      nodes.append(
        Node(
          name: node.name + ".residual", op: .binary(.add), inputs: [presum, operand],
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
