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
    return prepared
  }

  /// Activations the engine evaluates by lookup table (see `Int8Lowering.lowerLookup`).
  static func hasLookupTable(_ activation: Activation) -> Bool {
    switch activation {
    case .sigmoid, .tanh, .hardSwish, .gelu(tanhApproximation: false): true
    default: false
    }
  }
}
