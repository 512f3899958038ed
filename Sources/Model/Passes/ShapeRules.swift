/// Per-op static shape rules. `resolve` also fills defaulted attributes (kernel shape from the
/// weights, strides/dilations of 1, zero pads) and turns `auto_pad` into explicit pads, so
/// after shape inference every Conv/pool carries complete explicit attributes.
enum ShapeRules {
  /// Normalises a possibly negative axis for a tensor of `rank`.
  static func axis(_ axis: Int, rank: Int, _ node: Node) throws -> Int {
    let a = axis < 0 ? axis + rank : axis
    guard a >= 0, a < rank else {
      throw failure(node, "axis \(axis) is out of range for rank \(rank)")
    }
    return a
  }

  static func failure(_ node: Node, _ reason: String) -> ModelError {
    ModelError(.invalidNode, "node '\(node.name)' (\(node.op.name)): \(reason)")
  }

  /// numpy broadcasting of two shapes.
  static func broadcast(_ a: [Int], _ b: [Int], _ node: Node) throws -> [Int] {
    let rank = max(a.count, b.count)
    let pa = [Int](repeating: 1, count: rank - a.count) + a
    let pb = [Int](repeating: 1, count: rank - b.count) + b
    return try zip(pa, pb).map { x, y in
      if x == y || y == 1 { return x }
      if x == 1 { return y }
      throw failure(node, "shapes \(a) and \(b) do not broadcast")
    }
  }

  /// Returns the node with resolved attributes and the shapes of its outputs.
  static func resolve(_ node: Node, _ shapes: [[Int]]) throws -> (Node, [[Int]]) {
    var node = node
    let x = shapes[0]
    func fail(_ reason: String) -> ModelError { failure(node, reason) }
    switch node.op {
    case .conv(var c):
      let w = shapes[1]
      guard x.count >= 3, w.count == x.count else {
        throw fail("input \(x) and weights \(w) ranks differ or < 3")
      }
      let spatial = x.count - 2
      if c.kernelShape.isEmpty { c.kernelShape = Array(w[2...]) }
      guard c.kernelShape == Array(w[2...]) else {
        throw fail("kernel_shape \(c.kernelShape) differs from weights \(w)")
      }
      guard c.group >= 1, x[1] == w[1] * c.group, w[0] % c.group == 0 else {
        throw fail("input channels \(x[1]), weights \(w) and group \(c.group) do not match")
      }
      if let b = node.convolutionBias, shapes[node.inputs.firstIndex(of: b) ?? 2] != [w[0]] {
        throw fail("bias shape must be [\(w[0])]")
      }
      let (pads, out) = try window(
        input: Array(x[2...]), kernel: c.kernelShape, strides: &c.strides, pads: c.pads,
        dilations: &c.dilations, autoPad: c.autoPad, ceil: false, spatial: spatial, fail)
      c.pads = pads
      c.autoPad = .explicit
      node.op = .conv(c)
      let y = [x[0], w[0]] + out
      if let s = node.sumOperand, shapes[shapes.count - 1] != y {
        throw fail("sum operand '\(s)' shape differs from output \(y)")
      }
      return (node, [y])
    case .maxPool(var p), .averagePool(var p):
      guard x.count >= 3, p.kernelShape.count == x.count - 2 else {
        throw fail("kernel_shape \(p.kernelShape) does not fit input \(x)")
      }
      let (pads, out) = try window(
        input: Array(x[2...]), kernel: p.kernelShape, strides: &p.strides, pads: p.pads,
        dilations: &p.dilations, autoPad: p.autoPad, ceil: p.ceilMode, spatial: x.count - 2, fail)
      p.pads = pads
      p.autoPad = .explicit
      if case .maxPool = node.op { node.op = .maxPool(p) } else { node.op = .averagePool(p) }
      return (node, [[x[0], x[1]] + out])
    case .gemm(let g):
      let b = shapes[1]
      guard x.count == 2, b.count == 2 else {
        throw fail("Gemm needs 2-D A and B, got \(x) and \(b)")
      }
      let (m, k) = g.transA ? (x[1], x[0]) : (x[0], x[1])
      let (k2, n) = g.transB ? (b[1], b[0]) : (b[0], b[1])
      guard k == k2 else { throw fail("inner dimensions \(k) and \(k2) differ") }
      if shapes.count > 2, try broadcast([m, n], shapes[2], node) != [m, n] {
        throw fail("C \(shapes[2]) does not broadcast to [\(m), \(n)]")
      }
      return (node, [[m, n]])
    case .matMul:
      var a = x
      var b = shapes[1]
      guard !a.isEmpty, !b.isEmpty else { throw fail("MatMul of scalars") }
      let aVector = a.count == 1
      let bVector = b.count == 1
      if aVector { a = [1] + a }
      if bVector { b = b + [1] }
      guard a[a.count - 1] == b[b.count - 2] else {
        throw fail("inner dimensions of \(x) and \(shapes[1]) differ")
      }
      var y =
        try broadcast(Array(a.dropLast(2)), Array(b.dropLast(2)), node) + [
          a[a.count - 2], b[b.count - 1],
        ]
      if aVector { y.remove(at: y.count - 2) }
      if bVector { y.removeLast() }
      return (node, [y])
    case .binary:
      return (node, [try broadcast(x, shapes[1], node)])
    case .activation, .erf, .identity, .cast, .quantizeLinear, .dequantizeLinear:
      return (node, [x])
    case .softmax(let axis, _):
      _ = try Self.axis(axis, rank: x.count, node)
      return (node, [x])
    case .batchNormalization, .scaleShift:
      guard x.count >= 2 else { throw fail("input \(x) has no channel axis") }
      for s in shapes.dropFirst() where s != [x[1]] {
        throw fail("parameter shape \(s) must be [\(x[1])]")
      }
      return (node, [x])
    case .globalAveragePool:
      guard x.count >= 3 else { throw fail("input \(x) has no spatial axes") }
      return (node, [[x[0], x[1]] + [Int](repeating: 1, count: x.count - 2)])
    case .reduceMean(let axes, let keep):
      let list = try (axes ?? Array(0..<x.count)).map { try axis($0, rank: x.count, node) }
      node.op = .reduceMean(axes: Set(list).sorted(), keepDims: keep)
      var y: [Int] = []
      for (i, d) in x.enumerated() {
        if list.contains(i) { if keep { y.append(1) } } else { y.append(d) }
      }
      return (node, [y])
    case .flatten(let a):
      let axis = a < 0 ? a + x.count : a
      guard axis >= 0, axis <= x.count else { throw fail("axis \(a) is out of range for \(x)") }
      node.op = .flatten(axis: axis)
      return (node, [[x[..<axis].reduce(1, *), x[axis...].reduce(1, *)]])
    case .reshape(let target?, let allowZero):
      var y = target
      var unknown: Int?
      for (i, d) in target.enumerated() {
        if d == 0 && !allowZero {
          guard i < x.count else { throw fail("0 at position \(i) but input \(x) has no such dim") }
          y[i] = x[i]
        } else if d == -1 {
          guard unknown == nil else { throw fail("more than one -1 in \(target)") }
          unknown = i
        } else if d < 0 {
          throw fail("invalid dimension \(d) in \(target)")
        }
      }
      let count = x.reduce(1, *)
      if let u = unknown {
        let known = y.enumerated().filter { $0.offset != u }.map(\.element).reduce(1, *)
        guard known > 0, count % known == 0 else { throw fail("cannot reshape \(x) to \(target)") }
        y[u] = count / known
      }
      guard y.reduce(1, *) == count else { throw fail("cannot reshape \(x) to \(target)") }
      node.op = .reshape(shape: y, allowZero: allowZero)
      return (node, [y])
    case .transpose(let perm):
      let p = perm ?? Array((0..<x.count).reversed())
      guard p.sorted() == Array(0..<x.count) else {
        throw fail("perm \(p) is not a permutation for \(x)")
      }
      node.op = .transpose(perm: p)
      return (node, [p.map { x[$0] }])
    case .squeeze(let axes):
      let list =
        try axes.map { try $0.map { try axis($0, rank: x.count, node) } }
        ?? x.indices.filter { x[$0] == 1 }
      for a in list where x[a] != 1 { throw fail("cannot squeeze axis \(a) of size \(x[a])") }
      node.op = .squeeze(axes: list.sorted())
      return (node, [x.enumerated().filter { !list.contains($0.offset) }.map(\.element)])
    case .unsqueeze(let axes):
      let rank = x.count + axes.count
      let list = try axes.map { try axis($0, rank: rank, node) }.sorted()
      guard Set(list).count == list.count else { throw fail("repeated axes \(axes)") }
      node.op = .unsqueeze(axes: list)
      var y = x
      for a in list { y.insert(1, at: a) }
      return (node, [y])
    case .concat(let a):
      let axis = try axis(a, rank: x.count, node)
      var y = x
      y[axis] = 0
      for s in shapes {
        guard s.count == x.count, s.indices.allSatisfy({ $0 == axis || s[$0] == x[$0] }) else {
          throw fail("shapes \(shapes) cannot be concatenated on axis \(a)")
        }
        y[axis] += s[axis]
      }
      node.op = .concat(axis: axis)
      return (node, [y])
    case .split(let a, let sizes):
      let axis = try axis(a, rank: x.count, node)
      let n = node.outputs.count
      var list = sizes ?? []
      if sizes == nil {
        let chunk = (x[axis] + n - 1) / n
        list = (0..<n).map { min(chunk, max(0, x[axis] - $0 * chunk)) }
      }
      guard list.count == n, list.reduce(0, +) == x[axis], list.allSatisfy({ $0 >= 0 }) else {
        throw fail("split \(list) does not fit dimension \(x[axis]) into \(n) outputs")
      }
      node.op = .split(axis: axis, sizes: list)
      return (
        node,
        list.map {
          var y = x
          y[axis] = $0
          return y
        }
      )
    case .slice(let starts?, let ends?, let axes, let steps):
      let axisList = try (axes ?? Array(0..<starts.count)).map { try axis($0, rank: x.count, node) }
      let stepList = steps ?? [Int](repeating: 1, count: starts.count)
      guard ends.count == starts.count, axisList.count == starts.count,
        stepList.count == starts.count,
        Set(axisList).count == axisList.count
      else { throw fail("starts/ends/axes/steps lengths differ") }
      var y = x
      for i in starts.indices {
        let (start, _, step, count) = try sliceRange(
          dim: x[axisList[i]], start: starts[i], end: ends[i], step: stepList[i], node)
        _ = start
        _ = step
        y[axisList[i]] = count
      }
      node.op = .slice(starts: starts, ends: ends, axes: axisList, steps: stepList)
      return (node, [y])
    case .pad(_, let pads?, _):
      guard pads.count == 2 * x.count else { throw fail("pads \(pads) need \(2 * x.count) values") }
      let y = x.indices.map { x[$0] + pads[$0] + pads[$0 + x.count] }
      guard y.allSatisfy({ $0 >= 0 }) else { throw fail("pads \(pads) make a negative size") }
      return (node, [y])
    case .shape(let start, let end):
      let rank = x.count
      func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + rank : v, 0), rank) }
      let s = clamp(start)
      let e = clamp(end ?? rank)
      node.op = .shape(start: s, end: e)
      return (node, [[max(0, e - s)]])
    case .gather(let a):
      let axis = try axis(a, rank: x.count, node)
      node.op = .gather(axis: axis)
      return (node, [Array(x[..<axis]) + shapes[1] + Array(x[(axis + 1)...])])
    case .reshape(nil, _), .slice, .pad:
      throw fail("its shape parameter is computed at run time, which is not supported")
    }
  }

  /// ONNX Slice index arithmetic for one axis: returns (first index, end, step, count).
  static func sliceRange(dim: Int, start: Int, end: Int, step: Int, _ node: Node) throws -> (
    Int, Int, Int, Int
  ) {
    guard step != 0, step.magnitude < 1 << 40 else {
      throw failure(node, "slice step \(step) is invalid")
    }
    var s = start < 0 ? start + dim : start
    var e = end < 0 ? end + dim : end
    if step > 0 {
      s = min(max(s, 0), dim)
      e = min(max(e, 0), dim)
      return (s, e, step, e > s ? (e - s + step - 1) / step : 0)
    } else {
      s = min(max(s, -1), dim - 1)
      e = min(max(e, -1), dim - 1)
      return (s, e, step, s > e ? (s - e - step - 1) / -step : 0)
    }
  }

  /// Output sizes and explicit pads of a sliding window (Conv, pools).
  private static func window(
    input: [Int], kernel: [Int], strides: inout [Int], pads: [Int], dilations: inout [Int],
    autoPad: AutoPad, ceil: Bool, spatial: Int, _ fail: (String) -> ModelError
  ) throws -> ([Int], [Int]) {
    if strides.isEmpty { strides = [Int](repeating: 1, count: spatial) }
    if dilations.isEmpty { dilations = [Int](repeating: 1, count: spatial) }
    var pads = pads.isEmpty ? [Int](repeating: 0, count: 2 * spatial) : pads
    guard strides.count == spatial, dilations.count == spatial, pads.count == 2 * spatial,
      kernel.count == spatial, strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }),
      pads.allSatisfy({ $0 >= 0 }), kernel.allSatisfy({ $0 > 0 })
    else {
      throw fail(
        "invalid strides \(strides), pads \(pads), dilations \(dilations) or kernel \(kernel)")
    }
    var out: [Int] = []
    for i in 0..<spatial {
      let extent = (kernel[i] - 1) * dilations[i] + 1
      switch autoPad {
      case .sameUpper, .sameLower:
        let o = (input[i] + strides[i] - 1) / strides[i]
        let total = max(0, (o - 1) * strides[i] + extent - input[i])
        let small = total / 2
        pads[i] = autoPad == .sameUpper ? small : total - small
        pads[i + spatial] = total - pads[i]
      case .valid:
        pads[i] = 0
        pads[i + spatial] = 0
      case .explicit: break
      }
      let span = input[i] + pads[i] + pads[i + spatial] - extent
      guard span >= 0 else {
        throw fail("window \(extent) is larger than padded input \(input[i])")
      }
      var o = (ceil ? (span + strides[i] - 1) / strides[i] : span / strides[i]) + 1
      // With ceil_mode, the last window must start inside the input or its begin padding.
      if ceil, (o - 1) * strides[i] >= input[i] + pads[i] { o -= 1 }
      out.append(o)
    }
    return (pads, out)
  }
}
