/// The graph transformations, each a function `Graph -> Graph` that can be run and tested on
/// its own. `prepare` runs them in the order an engine needs.
public enum GraphPasses {
  /// The full pipeline: shape inference (with constant folding), fusions, dead-node removal.
  /// `batchSize` overrides the first input dimension (symbolic or fixed).
  public static func prepare(_ graph: Graph, batchSize: Int? = nil) throws -> Graph {
    var g = try inferShapes(graph, batchSize: batchSize)
    g = try fuseGelu(g)
    g = try fuseMatMulAdd(g)
    g = try foldBatchNormalization(g)
    g = try fuseActivations(g)
    g = try fuseResidualAdd(g)
    // Activations that follow a sum post-op (ResNet's Add+Relu) fuse in a second round.
    g = try fuseActivations(g)
    return eliminateDeadNodes(g)
  }

  /// Sets the input shapes, then walks the
  /// nodes in order: folds constant parameter inputs into attributes, infers output shapes,
  /// and evaluates every node whose inputs are all constant (and `Shape` of any statically
  /// shaped value). `batchSize` replaces the first dimension of the first input (fixed or
  /// symbolic) and of any other input whose first dimension is symbolic; every other dimension
  /// must be fixed. Folding happens here because Reshape targets exported by PyTorch are
  /// computed by Shape/Gather/Concat chains that only become constant once shapes are known.
  public static func inferShapes(_ graph: Graph, batchSize: Int? = nil) throws -> Graph {
    var g = graph
    for (k, id) in g.inputs.enumerated() {
      let declared = k < g.declaredInputShapes.count ? g.declaredInputShapes[k] : []
      var shape: [Int] = []
      for (d, dim) in declared.enumerated() {
        switch dim {
        case .fixed(let v): shape.append(d == 0 && k == 0 ? (batchSize ?? v) : v)
        case .symbolic(let name):
          guard d == 0, let batchSize else {
            throw ModelError(
              .invalidGraph,
              "input '\(g.values[id].name)' dimension \(d) is symbolic ('\(name)'); only the batch dimension may be, and it needs a batch size"
            )
          }
          shape.append(batchSize)
        }
      }
      if let batchSize, batchSize <= 0 {
        throw ModelError(.invalidGraph, "batch size must be positive")
      }
      g.values[id].shape = shape
    }
    return try sweep(g, foldAll: true)
  }

  /// Replaces every node whose inputs are all constant (and `Shape` of statically shaped
  /// values) by its precomputed outputs. Works on graphs with or without inferred shapes.
  public static func foldConstants(_ graph: Graph) throws -> Graph {
    try sweep(graph, foldAll: true, inferring: false)
  }

  private static func sweep(_ graph: Graph, foldAll: Bool, inferring: Bool = true) throws -> Graph {
    var g = graph
    var kept: [Node] = []
    for original in g.nodes {
      let node = absorbParameters(original, g.constants)
      let constantInputs = node.inputs.compactMap { g.constants[$0] }
      if foldAll, constantInputs.count == node.inputs.count {
        let outputs = try ReferenceEvaluator.evaluate(node, constantInputs)
        for (id, t) in zip(node.outputs, outputs) {
          g.constants[id] = t
          g.values[id].shape = t.shape
          g.values[id].elementType = t.elementType
        }
        continue
      }
      if case .shape(let start, let end) = node.op, let s = g.values[node.inputs[0]].shape {
        let rank = s.count
        func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + rank : v, 0), rank) }
        let dims = s[clamp(start)..<clamp(end ?? rank)].map { Int64($0) }
        g.constants[node.outputs[0]] = Tensor(shape: [dims.count], int64s: Array(dims))
        g.values[node.outputs[0]].shape = [dims.count]
        continue
      }
      guard inferring else {
        kept.append(node)
        continue
      }
      let shapes = try node.inputs.map { id -> [Int] in
        guard let s = g.values[id].shape else {
          throw ModelError(
            .invalidGraph,
            "node '\(node.name)' (\(node.op.name)): input '\(g.values[id].name)' has no shape")
        }
        return s
      }
      let (resolved, outShapes) = try ShapeRules.resolve(node, shapes)
      for (id, s) in zip(resolved.outputs, outShapes) { g.values[id].shape = s }
      kept.append(resolved)
    }
    g.nodes = kept
    return g
  }

  /// Moves constant parameter inputs (Reshape shape, Slice starts/ends, Pad pads) into the
  /// op's attributes and drops those inputs.
  static func absorbParameters(_ node: Node, _ constants: [ValueID: Tensor]) -> Node {
    var node = node
    func ints(_ i: Int) -> [Int]? {
      guard i < node.inputs.count, let v = constants[node.inputs[i]]?.integers else { return nil }
      return v.map(clampedIndex)
    }
    switch node.op {
    case .reshape(nil, let allowZero):
      if let s = ints(1) {
        node.op = .reshape(shape: s, allowZero: allowZero)
        node.inputs = [node.inputs[0]]
      }
    case .slice(nil, nil, let axes, let steps):
      if let s = ints(1), let e = ints(2) {
        node.op = .slice(starts: s, ends: e, axes: axes, steps: steps)
        node.inputs = [node.inputs[0]]
      }
    case .pad(let mode, nil, let value):
      if let p = ints(1) {
        node.op = .pad(mode: mode, pads: p, value: value)
        node.inputs = [node.inputs[0]]
      }
    default: break
    }
    return node
  }

  /// Exporters write INT64_MAX/MIN for "to the end" in Slice parameters; no dimension comes
  /// near 2^40, so clamping keeps the meaning and rules out overflow in index arithmetic.
  static func clampedIndex(_ v: Int64) -> Int {
    let limit = Int64(1) << 40
    return Int(min(max(v, -limit), limit))
  }

  /// Removes nodes none of whose outputs reach a graph output, and constants nobody reads.
  public static func eliminateDeadNodes(_ graph: Graph) -> Graph {
    var g = graph
    var live = Set(g.outputs)
    var kept: [Node] = []
    for node in g.nodes.reversed() where node.outputs.contains(where: live.contains) {
      kept.append(node)
      live.formUnion(node.inputs)
    }
    g.nodes = kept.reversed()
    g.constants = g.constants.filter { live.contains($0.key) }
    return g
  }
}
