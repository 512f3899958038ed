/// Data movement shared by every element type: ops that only rearrange elements (transpose,
/// slice, gather, pad, broadcast, concat) compute a map of source offsets and apply it here.
extension TensorStorage {
  /// Elements at `offsets` (an offset of -1 yields `fill`, converted to the element type).
  func take(_ offsets: [Int], fill: Float = 0) -> TensorStorage {
    func pick<T>(_ v: [T], _ f: T) -> [T] { offsets.map { $0 < 0 ? f : v[$0] } }
    switch self {
    case .float32(let v): return .float32(pick(v, fill))
    case .int64(let v): return .int64(pick(v, Int64(fill)))
    case .int32(let v): return .int32(pick(v, Int32(fill)))
    case .int8(let v): return .int8(pick(v, Int8(clamping: Int(fill))))
    case .uint8(let v): return .uint8(pick(v, UInt8(clamping: Int(fill))))
    }
  }

  /// All elements of `parts` (same element type) one after the other; nil when types differ.
  static func joined(_ parts: [TensorStorage]) -> TensorStorage? {
    guard let first = parts.first else { return nil }
    switch first {
    case .float32:
      var all: [Float] = []
      for p in parts {
        guard case .float32(let v) = p else { return nil }
        all += v
      }
      return .float32(all)
    case .int64:
      var all: [Int64] = []
      for p in parts {
        guard case .int64(let v) = p else { return nil }
        all += v
      }
      return .int64(all)
    case .int32:
      var all: [Int32] = []
      for p in parts {
        guard case .int32(let v) = p else { return nil }
        all += v
      }
      return .int32(all)
    case .int8:
      var all: [Int8] = []
      for p in parts {
        guard case .int8(let v) = p else { return nil }
        all += v
      }
      return .int8(all)
    case .uint8:
      var all: [UInt8] = []
      for p in parts {
        guard case .uint8(let v) = p else { return nil }
        all += v
      }
      return .uint8(all)
    }
  }
}

/// Row-major strides of `shape`.
func strides(of shape: [Int]) -> [Int] {
  var result = [Int](repeating: 1, count: shape.count)
  var s = 1
  for i in shape.indices.reversed() {
    result[i] = s
    s *= shape[i]
  }
  return result
}

/// Calls `body` with every multi-index of `shape` in row-major order.
func forEachIndex(_ shape: [Int], _ body: ([Int]) -> Void) {
  let count = shape.reduce(1, *)
  guard count > 0 else { return }
  var index = [Int](repeating: 0, count: shape.count)
  for _ in 0..<count {
    body(index)
    advance(&index, within: shape)
  }
}

/// Steps `index` to the next multi-index of `shape` in row-major order (the last dimension
/// fastest); past the last one it wraps to all zeros.
@inline(__always)
func advance(_ index: inout [Int], within shape: [Int]) {
  var d = shape.count - 1
  while d >= 0 {
    index[d] += 1
    if index[d] < shape[d] { return }
    index[d] = 0
    d -= 1
  }
}

/// For each element of `outShape`, the offset of the element of `inShape` that numpy
/// broadcasting reads.
func broadcastOffsets(from inShape: [Int], to outShape: [Int]) -> [Int] {
  let padded = [Int](repeating: 1, count: outShape.count - inShape.count) + inShape
  let inStrides = strides(of: padded)
  var offsets: [Int] = []
  offsets.reserveCapacity(outShape.reduce(1, *))
  forEachIndex(outShape) { index in
    var o = 0
    for d in index.indices where padded[d] != 1 { o += index[d] * inStrides[d] }
    offsets.append(o)
  }
  return offsets
}
