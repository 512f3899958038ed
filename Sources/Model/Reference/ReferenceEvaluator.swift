import Foundation

/// A plain-Swift interpreter of the IR: the correctness oracle for the fast engines and the
/// evaluator constant folding uses. NCHW semantics; float32 plus integer shape arithmetic.
/// Straightforward loops, no tiling: speed is the oneDNN engine's job.
public enum ReferenceEvaluator {
  /// Runs a shape-inferred graph on `inputs` (one per graph input, same order) and returns
  /// its outputs.
  public static func run(_ graph: Graph, inputs: [Tensor]) throws -> [Tensor] {
    try run(graph, inputs: inputs, visit: nil)
  }

  /// `run`, showing every graph input and node output to `visit` before it is freed (what
  /// int8 calibration observes on the reference path).
  static func run(
    _ graph: Graph, inputs: [Tensor], visit: ((ValueID, Tensor) throws -> Void)?
  ) throws -> [Tensor] {
    guard inputs.count == graph.inputs.count else {
      throw ModelError(
        .invalidGraph, "the graph takes \(graph.inputs.count) inputs, got \(inputs.count)")
    }
    var values = [Tensor?](repeating: nil, count: graph.values.count)
    for (id, tensor) in graph.constants { values[id] = tensor }
    for (id, tensor) in zip(graph.inputs, inputs) {
      if let shape = graph.values[id].shape, shape != tensor.shape {
        throw ModelError(
          .invalidGraph,
          "input '\(graph.values[id].name)' has shape \(tensor.shape), expected \(shape)")
      }
      values[id] = tensor
      try visit?(id, tensor)
    }
    // Free each value after its last reader so whole-model runs stay within memory.
    var lastUse = [Int](repeating: -1, count: graph.values.count)
    for (i, node) in graph.nodes.enumerated() { for v in node.inputs { lastUse[v] = i } }
    for v in graph.outputs { lastUse[v] = Int.max }
    for (i, node) in graph.nodes.enumerated() {
      let args = try node.inputs.map { id -> Tensor in
        guard let t = values[id] else {
          throw ModelError(
            .missingValue, "node '\(node.name)': input '\(graph.values[id].name)' has no value")
        }
        return t
      }
      let outputs = try evaluate(node, args)
      for (id, t) in zip(node.outputs, outputs) {
        values[id] = t
        try visit?(id, t)
      }
      for v in node.inputs where lastUse[v] == i && graph.constants[v] == nil { values[v] = nil }
    }
    return try graph.outputs.map { id in
      guard let t = values[id] else {
        throw ModelError(.missingValue, "graph output '\(graph.values[id].name)' was not computed")
      }
      return t
    }
  }

  /// Evaluates one node on concrete inputs.
  static func evaluate(_ node: Node, _ inputs: [Tensor]) throws -> [Tensor] {
    let (resolved, shapes) = try ShapeRules.resolve(node, inputs.map(\.shape))
    func fail(_ reason: String) -> ModelError { ShapeRules.failure(node, reason) }
    func floats(_ i: Int) throws -> [Float] {
      guard let v = inputs[i].floats else { throw fail("input \(i) must be float32") }
      return v
    }
    let x = inputs[0]
    let y = shapes[0]
    switch resolved.op {
    case .conv(let c):
      var out = try convolution(
        c, try floats(0), x.shape, try floats(1), inputs[1].shape,
        bias: resolved.convolutionBias != nil ? try floats(2) : nil, outShape: y, fail)
      try applyPostOps(
        c.postOps, &out, sum: resolved.sumOperand != nil ? try floats(inputs.count - 1) : nil)
      return [Tensor(shape: y, floats: out)]
    case .gemm(let g):
      var out = try gemm(g, inputs, y, fail)
      try applyPostOps(g.postOps, &out, sum: nil)
      return [Tensor(shape: y, floats: out)]
    case .matMul:
      return [
        Tensor(
          shape: y, floats: try matMul(try floats(0), x.shape, try floats(1), inputs[1].shape, y))
      ]
    case .binary(let op):
      return [try binary(op, x, inputs[1], y, fail)]
    case .activation(let a):
      return [Tensor(shape: y, floats: try floats(0).map { activate(a, $0) })]
    case .erf:
      return [Tensor(shape: y, floats: try floats(0).map { Float(Foundation.erf(Double($0))) })]
    case .softmax(let axis, let coerce):
      return [
        Tensor(
          shape: y,
          floats: softmax(
            try floats(0), y, axis: try ShapeRules.axis(axis, rank: y.count, node), coerce: coerce))
      ]
    case .batchNormalization(let epsilon):
      let (scale, bias, mean, variance) = (
        try floats(1), try floats(2), try floats(3), try floats(4)
      )
      let s = zip(scale, variance).map { $0 / (($1 + epsilon).squareRoot()) }
      let shift = (0..<s.count).map { bias[$0] - mean[$0] * s[$0] }
      return [Tensor(shape: y, floats: channelAffine(try floats(0), y, s, shift))]
    case .scaleShift:
      return [
        Tensor(shape: y, floats: channelAffine(try floats(0), y, try floats(1), try floats(2)))
      ]
    case .maxPool(let p), .averagePool(let p):
      let isMax = if case .maxPool = resolved.op { true } else { false }
      return [Tensor(shape: y, floats: try pool(p, isMax: isMax, try floats(0), x.shape, y, fail))]
    case .globalAveragePool:
      let inner = x.shape[2...].reduce(1, *)
      let v = try floats(0)
      let out = (0..<(x.shape[0] * x.shape[1])).map { i in
        var s: Float = 0
        for j in 0..<inner { s += v[i * inner + j] }
        return s / Float(inner)
      }
      return [Tensor(shape: y, floats: out)]
    case .reduceMean(let axes?, _):
      let v = try floats(0)
      let kept = x.shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
      var sums = [Float](repeating: 0, count: kept.reduce(1, *))
      let keptStrides = strides(of: kept)
      var i = 0
      forEachIndex(x.shape) { index in
        var o = 0
        for d in index.indices where !axes.contains(d) { o += index[d] * keptStrides[d] }
        sums[o] += v[i]
        i += 1
      }
      let n = Float(axes.map { x.shape[$0] }.reduce(1, *))
      return [Tensor(shape: y, floats: sums.map { $0 / n })]
    case .flatten, .reshape, .squeeze, .unsqueeze, .identity:
      return [Tensor(shape: y, storage: x.storage)]
    case .transpose(let perm?):
      let s = strides(of: x.shape)
      var offsets: [Int] = []
      offsets.reserveCapacity(x.elementCount)
      forEachIndex(y) { index in
        var o = 0
        for d in index.indices { o += index[d] * s[perm[d]] }
        offsets.append(o)
      }
      return [Tensor(shape: y, storage: x.storage.take(offsets))]
    case .concat(let axis):
      guard let all = TensorStorage.joined(inputs.map(\.storage)) else {
        throw fail("inputs have different types")
      }
      let outer = y[..<axis].reduce(1, *)
      let inner = y[(axis + 1)...].reduce(1, *)
      var bases: [Int] = []
      var base = 0
      for t in inputs {
        bases.append(base)
        base += t.elementCount
      }
      var offsets: [Int] = []
      offsets.reserveCapacity(y.reduce(1, *))
      for o in 0..<outer {
        for (k, t) in inputs.enumerated() {
          let block = t.shape[axis] * inner
          for j in 0..<block { offsets.append(bases[k] + o * block + j) }
        }
      }
      return [Tensor(shape: y, storage: all.take(offsets))]
    case .split(let axis, let sizes?):
      let outer = x.shape[..<axis].reduce(1, *)
      let inner = x.shape[(axis + 1)...].reduce(1, *)
      var start = 0
      return zip(sizes, shapes).map { size, shape in
        var offsets: [Int] = []
        for o in 0..<outer {
          for j in 0..<(size * inner) { offsets.append((o * x.shape[axis] + start) * inner + j) }
        }
        start += size
        return Tensor(shape: shape, storage: x.storage.take(offsets))
      }
    case .slice(let starts?, let ends?, let axes?, let steps?):
      var first = [Int](repeating: 0, count: x.shape.count)
      var step = [Int](repeating: 1, count: x.shape.count)
      for i in starts.indices {
        let (s, _, st, _) = try ShapeRules.sliceRange(
          dim: x.shape[axes[i]], start: starts[i], end: ends[i], step: steps[i], node)
        first[axes[i]] = s
        step[axes[i]] = st
      }
      let s = strides(of: x.shape)
      var offsets: [Int] = []
      forEachIndex(y) { index in
        var o = 0
        for d in index.indices { o += (first[d] + index[d] * step[d]) * s[d] }
        offsets.append(o)
      }
      return [Tensor(shape: y, storage: x.storage.take(offsets))]
    case .pad(let mode, let pads?, let value):
      let rank = x.shape.count
      let s = strides(of: x.shape)
      var offsets: [Int] = []
      if mode == .reflect,
        x.shape.indices.contains(where: {
          pads[$0] >= x.shape[$0] || pads[$0 + rank] >= x.shape[$0]
        })
      {
        throw fail("reflect pads \(pads) must be smaller than the input \(x.shape)")
      }
      forEachIndex(y) { index in
        var o = 0
        for d in 0..<rank {
          var i = index[d] - pads[d]
          let n = x.shape[d]
          if i < 0 || i >= n {
            switch mode {
            case .constant: o = -1
            case .edge: i = min(max(i, 0), n - 1)
            case .reflect:
              if i < 0 { i = -i } else { i = 2 * (n - 1) - i }
            }
            if o < 0 { break }
          }
          o += i * s[d]
        }
        offsets.append(o)
      }
      if mode == .constant, x.shape.contains(0) { offsets = offsets.map { _ in -1 } }
      return [Tensor(shape: y, storage: x.storage.take(offsets, fill: value))]
    case .shape(let start, let end?):
      return [Tensor(shape: y, int64s: x.shape[start..<end].map { Int64($0) })]
    case .gather(let axis):
      guard let indices = inputs[1].integers else { throw fail("indices must be integers") }
      let dim = x.shape[axis]
      let outer = x.shape[..<axis].reduce(1, *)
      let inner = x.shape[(axis + 1)...].reduce(1, *)
      var offsets: [Int] = []
      for o in 0..<outer {
        for raw in indices {
          let i = raw < 0 ? Int(raw) + dim : Int(raw)
          guard i >= 0, i < dim else {
            throw fail("index \(raw) is out of range for dimension \(dim)")
          }
          for j in 0..<inner { offsets.append((o * dim + i) * inner + j) }
        }
      }
      return [Tensor(shape: y, storage: x.storage.take(offsets))]
    case .cast(let type):
      return [Tensor(shape: y, storage: cast(x, to: type))]
    case .quantizeLinear(let axis):
      let scale = try floats(1)
      let zero = inputs.count > 2 ? inputs[2].floatValues : [0]
      let signed = inputs.count > 2 ? inputs[2].elementType == .int8 : false
      let (lo, hi): (Float, Float) = signed ? (-128, 127) : (0, 255)
      let v = try floats(0)
      let q = try perAxis(x.shape, axis: axis, count: scale.count, node).enumerated().map { i, c in
        let v = v[i] / scale[c]
        return min(max(v.rounded(.toNearestOrEven) + zero[zero.count == 1 ? 0 : c], lo), hi)
      }
      return [
        Tensor(shape: y, storage: signed ? .int8(q.map { Int8($0) }) : .uint8(q.map { UInt8($0) }))
      ]
    case .dequantizeLinear(let axis):
      let scale = try floats(1)
      let zero = inputs.count > 2 ? inputs[2].floatValues : [0]
      let v = x.floatValues
      let out = try perAxis(x.shape, axis: axis, count: scale.count, node).enumerated().map {
        i, c in
        (v[i] - zero[zero.count == 1 ? 0 : c]) * scale[c]
      }
      return [Tensor(shape: y, floats: out)]
    case .reduceMean(nil, _), .transpose(nil), .split(_, nil), .slice, .pad,
      .shape(_, nil):
      throw fail("parameters are unresolved")
    }
  }

  /// For each element of a tensor of `shape`, its index along `axis` (0 when per-tensor).
  private static func perAxis(_ shape: [Int], axis: Int, count: Int, _ node: Node) throws -> [Int] {
    let total = shape.reduce(1, *)
    if count == 1 { return [Int](repeating: 0, count: total) }
    let a = try ShapeRules.axis(axis, rank: shape.count, node)
    guard shape[a] == count else {
      throw ShapeRules.failure(node, "scale has \(count) values for axis size \(shape[a])")
    }
    let inner = shape[(a + 1)...].reduce(1, *)
    return (0..<total).map { ($0 / inner) % count }
  }

  static func activate(_ a: Activation, _ x: Float) -> Float {
    switch a {
    case .relu: return max(x, 0)
    case .leakyRelu(let alpha): return x >= 0 ? x : alpha * x
    case .clip(let lo, let hi): return min(max(x, lo), hi)
    case .sigmoid: return 1 / (1 + Foundation.exp(-x))
    case .hardSigmoid(let alpha, let beta): return max(0, min(1, alpha * x + beta))
    case .hardSwish: return x * max(0, min(1, x / 6 + 0.5))
    case .tanh: return Foundation.tanh(x)
    case .gelu(let approximate):
      let d = Double(x)
      if approximate {
        return Float(
          0.5 * d * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (d + 0.044715 * d * d * d)))
        )
      }
      return Float(0.5 * d * (1 + Foundation.erf(d / 2.0.squareRoot())))
    }
  }

  static func applyPostOps(_ ops: [PostOp], _ y: inout [Float], sum: [Float]?) throws {
    for op in ops {
      switch op {
      case .activation(let a): for i in y.indices { y[i] = activate(a, y[i]) }
      case .sum:
        guard let sum, sum.count == y.count else {
          throw ModelError(.invalidGraph, "sum post-op without a matching operand")
        }
        for i in y.indices { y[i] += sum[i] }
      }
    }
  }

  private static func channelAffine(
    _ x: [Float], _ shape: [Int], _ scale: [Float], _ shift: [Float]
  ) -> [Float] {
    let c = shape[1]
    let inner = shape[2...].reduce(1, *)
    return x.enumerated().map { i, v in
      let ch = (i / inner) % c
      return v * scale[ch] + shift[ch]
    }
  }

  private static func binary(
    _ op: BinaryOperator, _ a: Tensor, _ b: Tensor, _ y: [Int], _ fail: (String) -> ModelError
  ) throws -> Tensor {
    let ia = broadcastOffsets(from: a.shape, to: y)
    let ib = broadcastOffsets(from: b.shape, to: y)
    if let fa = a.floats, let fb = b.floats {
      let f: (Float, Float) -> Float
      switch op {
      case .add: f = (+)
      case .sub: f = (-)
      case .mul: f = (*)
      case .div: f = (/)
      }
      return Tensor(shape: y, floats: zip(ia, ib).map { f(fa[$0], fb[$1]) })
    }
    guard a.elementType == b.elementType, let va = a.integers, let vb = b.integers else {
      throw fail("operands have types \(a.elementType) and \(b.elementType)")
    }
    var out: [Int64] = []
    for (i, j) in zip(ia, ib) {
      switch op {
      case .add: out.append(va[i] &+ vb[j])
      case .sub: out.append(va[i] &- vb[j])
      case .mul: out.append(va[i] &* vb[j])
      case .div:
        guard vb[j] != 0 else { throw fail("integer division by zero") }
        out.append(va[i] / vb[j])
      }
    }
    return Tensor(shape: y, storage: cast(Tensor(shape: y, int64s: out), to: a.elementType))
  }

  private static func cast(_ x: Tensor, to type: ElementType) -> TensorStorage {
    if type == .float32 { return .float32(x.floatValues) }
    let ints: [Int64] =
      x.integers
      ?? x.floatValues.map { $0.isFinite ? Int64(clamping: Int($0.rounded(.towardZero))) : 0 }
    switch type {
    case .int64: return .int64(ints)
    case .int32: return .int32(ints.map { Int32(truncatingIfNeeded: $0) })
    case .int8: return .int8(ints.map { Int8(truncatingIfNeeded: $0) })
    case .uint8: return .uint8(ints.map { UInt8(truncatingIfNeeded: $0) })
    case .float32: return .float32(x.floatValues)
    }
  }

  private static func softmax(_ x: [Float], _ shape: [Int], axis: Int, coerce: Bool) -> [Float] {
    // Coerced: normalise over all dims >= axis together; otherwise over `axis` alone.
    let n = coerce ? shape[axis...].reduce(1, *) : shape[axis]
    let inner = coerce ? 1 : shape[(axis + 1)...].reduce(1, *)
    let outer = x.count / max(1, n * inner)
    var y = x
    for o in 0..<outer {
      for j in 0..<inner {
        let base = o * n * inner + j
        var m = -Float.infinity
        for k in 0..<n { m = max(m, x[base + k * inner]) }
        var s: Float = 0
        for k in 0..<n {
          let e = Foundation.exp(x[base + k * inner] - m)
          y[base + k * inner] = e
          s += e
        }
        for k in 0..<n { y[base + k * inner] /= s }
      }
    }
    return y
  }

  private static func gemm(
    _ g: Gemm, _ inputs: [Tensor], _ y: [Int], _ fail: (String) -> ModelError
  ) throws -> [Float] {
    guard let a = inputs[0].floats, let b = inputs[1].floats else {
      throw fail("A and B must be float32")
    }
    let (m, n) = (y[0], y[1])
    let k = g.transA ? inputs[0].shape[0] : inputs[0].shape[1]
    var out = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
      for p in 0..<k {
        let av = g.transA ? a[p * m + i] : a[i * k + p]
        for j in 0..<n {
          out[i * n + j] += av * (g.transB ? b[j * k + p] : b[p * n + j])
        }
      }
    }
    var c: [Int]? = nil
    var cv: [Float] = []
    if inputs.count > 2 {
      guard let v = inputs[2].floats else { throw fail("C must be float32") }
      cv = v
      c = broadcastOffsets(from: inputs[2].shape, to: y)
    }
    for i in out.indices {
      out[i] = g.alpha * out[i] + (c.map { g.beta * cv[$0[i]] } ?? 0)
    }
    return out
  }

  private static func matMul(_ a: [Float], _ sa: [Int], _ b: [Float], _ sb: [Int], _ y: [Int])
    throws -> [Float]
  {
    let a2 = sa.count == 1 ? [1] + sa : sa
    let b2 = sb.count == 1 ? sb + [1] : sb
    let (m, k, n) = (a2[a2.count - 2], a2[a2.count - 1], b2[b2.count - 1])
    let batch = try ShapeRules.broadcast(
      Array(a2.dropLast(2)), Array(b2.dropLast(2)),
      Node(name: "MatMul", op: .matMul, inputs: [], outputs: []))
    let aBatch = broadcastOffsets(from: Array(a2.dropLast(2)), to: batch)
    let bBatch = broadcastOffsets(from: Array(b2.dropLast(2)), to: batch)
    var out = [Float](repeating: 0, count: batch.reduce(1, *) * m * n)
    for t in 0..<aBatch.count {
      let ao = aBatch[t] * m * k
      let bo = bBatch[t] * k * n
      let oo = t * m * n
      for i in 0..<m {
        for p in 0..<k {
          let av = a[ao + i * k + p]
          for j in 0..<n { out[oo + i * n + j] += av * b[bo + p * n + j] }
        }
      }
    }
    return out
  }

  private static func convolution(
    _ c: Convolution, _ x: [Float], _ xs: [Int], _ w: [Float], _ ws: [Int], bias: [Float]?,
    outShape ys: [Int], _ fail: (String) -> ModelError
  ) throws -> [Float] {
    // 1-D convolutions run as 2-D with height 1.
    guard xs.count == 4 || xs.count == 3 else {
      throw fail("only 1-D and 2-D convolutions are supported")
    }
    let two = xs.count == 4
    let (n, cin, h, wd) = (xs[0], xs[1], two ? xs[2] : 1, two ? xs[3] : xs[2])
    let (m, kh, kw) = (ws[0], two ? ws[2] : 1, two ? ws[3] : ws[2])
    let (oh, ow) = (two ? ys[2] : 1, two ? ys[3] : ys[2])
    let (sh, sw) = (two ? c.strides[0] : 1, two ? c.strides[1] : c.strides[0])
    let (dh, dw) = (two ? c.dilations[0] : 1, two ? c.dilations[1] : c.dilations[0])
    let (ph, pw) = (two ? c.pads[0] : 0, two ? c.pads[1] : c.pads[0])
    let cpg = cin / c.group
    let mpg = m / c.group
    var y = [Float](repeating: 0, count: n * m * oh * ow)
    x.withUnsafeBufferPointer { x in
      w.withUnsafeBufferPointer { w in
        y.withUnsafeMutableBufferPointer { y in
          for b in 0..<n {
            for oc in 0..<m {
              let g = oc / mpg
              let yo = (b * m + oc) * oh * ow
              let initial = bias?[oc] ?? 0
              for i in 0..<(oh * ow) { y[yo + i] = initial }
              for ic in 0..<cpg {
                let xo = (b * cin + g * cpg + ic) * h * wd
                for ki in 0..<kh {
                  for kj in 0..<kw {
                    let wv = w[((oc * cpg + ic) * kh + ki) * kw + kj]
                    for r in 0..<oh {
                      let ih = r * sh - ph + ki * dh
                      if ih < 0 || ih >= h { continue }
                      for q in 0..<ow {
                        let iw = q * sw - pw + kj * dw
                        if iw < 0 || iw >= wd { continue }
                        y[yo + r * ow + q] += wv * x[xo + ih * wd + iw]
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    return y
  }

  private static func pool(
    _ p: Pooling, isMax: Bool, _ x: [Float], _ xs: [Int], _ ys: [Int],
    _ fail: (String) -> ModelError
  ) throws -> [Float] {
    guard xs.count == 4 || xs.count == 3 else {
      throw fail("only 1-D and 2-D pooling is supported")
    }
    let two = xs.count == 4
    let (h, wd) = (two ? xs[2] : 1, two ? xs[3] : xs[2])
    let (oh, ow) = (two ? ys[2] : 1, two ? ys[3] : ys[2])
    let (kh, kw) = (two ? p.kernelShape[0] : 1, two ? p.kernelShape[1] : p.kernelShape[0])
    let (sh, sw) = (two ? p.strides[0] : 1, two ? p.strides[1] : p.strides[0])
    let (dh, dw) = (two ? p.dilations[0] : 1, two ? p.dilations[1] : p.dilations[0])
    let (ph, pw) = (two ? p.pads[0] : 0, two ? p.pads[1] : p.pads[0])
    let (peh, pew) = (two ? p.pads[2] : 0, two ? p.pads[3] : p.pads[1])
    let planes = xs[0] * xs[1]
    var y = [Float](repeating: 0, count: planes * oh * ow)
    for plane in 0..<planes {
      for r in 0..<oh {
        for q in 0..<ow {
          var acc: Float = isMax ? -Float.infinity : 0
          var valid = 0
          for ki in 0..<kh {
            let ih = r * sh - ph + ki * dh
            if ih < 0 || ih >= h { continue }
            for kj in 0..<kw {
              let iw = q * sw - pw + kj * dw
              if iw < 0 || iw >= wd { continue }
              let v = x[(plane * h + ih) * wd + iw]
              if isMax { acc = max(acc, v) } else { acc += v }
              valid += 1
            }
          }
          if !isMax {
            var divisor = valid
            if p.countIncludePad {
              // The window counts padding but not the overhang that ceil_mode adds beyond it.
              let hEnd = min(r * sh - ph + (kh - 1) * dh + 1, h + peh)
              let wEnd = min(q * sw - pw + (kw - 1) * dw + 1, wd + pew)
              divisor =
                ((hEnd - (r * sh - ph) + dh - 1) / dh) * ((wEnd - (q * sw - pw) + dw - 1) / dw)
            }
            acc /= Float(max(divisor, 1))
          }
          y[(plane * oh + r) * ow + q] = acc
        }
      }
    }
    return y
  }
}
