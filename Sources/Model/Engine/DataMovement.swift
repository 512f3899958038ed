import Foundation

/// Work of a lowered graph done by a Swift loop instead of a oneDNN primitive: data movement
/// (Transpose, Pad, strided Slice, Gather, broadcasting) and element type conversion, none of
/// which does arithmetic worth a JIT kernel.
protocol FloatKernel: AnyObject {
  /// Names the kernel in `FloatEngine.implementations`.
  var implementation: String { get }
  func run() throws
}

extension UnsafeMutablePointer where Pointee == Float {
  /// A copy of `values` that the caller owns (and deallocates), for kernels whose constants
  /// outlive the graph's arrays; nil for nil.
  static func ownedCopy(of values: [Float]?) -> Self? {
    guard let values else { return nil }
    let copy = Self.allocate(capacity: values.count)
    copy.initialize(from: values, count: values.count)
    return copy
  }
}

/// Per-dimension element strides of a value as the float engine stores it: channels-last for
/// rank 4, row-major otherwise.
func engineStrides(_ shape: [Int]) -> [Int] {
  if shape.count == 4 {
    let (c, h, w) = (shape[1], shape[2], shape[3])
    return [h * w * c, 1, w * c, c]
  }
  var strides = [Int](repeating: 1, count: shape.count)
  var running = 1
  for d in shape.indices.reversed() {
    strides[d] = running
    running *= shape[d]
  }
  return strides
}

/// `destination[out(i)] = source[in(i)]` for every output index `i`, where the offsets split
/// into independent groups of output dimensions: `in(i) = Σ_g input_g[i_g]` and likewise for the
/// output. One group per dimension expresses Transpose, Slice (any steps), Pad and
/// broadcasting; Gather's index dimensions form one group whose input table holds the gathered
/// positions. A negative input entry means "write the fill value" (constant Pad).
///
/// The tables live in one allocation made at build time; a run allocates nothing.
final class IndexedCopy: FloatKernel {
  let implementation = "swift:indexed-copy"
  var source: UnsafeRawPointer
  let destination: UnsafeMutableRawPointer
  private let elementSize: Int
  private let fillBits: UInt64
  private let hasFill: Bool
  private let groupCount: Int
  private let sizes: UnsafeMutablePointer<Int>
  /// For group g: input table at `tables + starts[g]`, output table right after it.
  private let starts: UnsafeMutablePointer<Int>
  private let tables: UnsafeMutablePointer<Int>
  private let counters: UnsafeMutablePointer<Int>
  /// The innermost group copies a contiguous run of both buffers.
  private let innerContiguous: Bool
  private let isEmpty: Bool

  /// `groups` are ordered outermost first; each has equal-length input and output tables.
  init(
    groups: [(input: [Int], output: [Int])], elementSize: Int, fillBits: UInt64 = 0,
    source: UnsafeRawPointer, destination: UnsafeMutableRawPointer
  ) {
    let groups = groups.isEmpty ? [(input: [0], output: [0])] : groups
    self.source = source
    self.destination = destination
    self.elementSize = elementSize
    self.fillBits = fillBits
    groupCount = groups.count
    hasFill = groups.contains { $0.input.contains { $0 < 0 } }
    isEmpty = groups.contains { $0.input.isEmpty }
    sizes = .allocate(capacity: groups.count)
    starts = .allocate(capacity: groups.count)
    counters = .allocate(capacity: groups.count)
    counters.initialize(repeating: 0, count: groups.count)
    let total = groups.reduce(0) { $0 + 2 * $1.input.count }
    tables = .allocate(capacity: max(total, 1))
    var position = 0
    for (g, group) in groups.enumerated() {
      sizes[g] = group.input.count
      starts[g] = position
      for (k, v) in group.input.enumerated() { tables[position + k] = v }
      position += group.input.count
      for (k, v) in group.output.enumerated() { tables[position + k] = v }
      position += group.output.count
    }
    let inner = groups[groups.count - 1]
    innerContiguous =
      !inner.input.isEmpty
      && inner.input.indices.allSatisfy {
        inner.input[$0] == inner.input[0] + $0 && inner.output[$0] == inner.output[0] + $0
      }
  }

  deinit {
    sizes.deallocate()
    starts.deallocate()
    tables.deallocate()
    counters.deallocate()
  }

  /// The input table of group `g`, for kernels that rewrite it per run (runtime Gather).
  func inputTable(_ g: Int) -> UnsafeMutableBufferPointer<Int> {
    UnsafeMutableBufferPointer(start: tables + starts[g], count: sizes[g])
  }

  func run() throws {
    guard !isEmpty else { return }
    switch elementSize {
    case 1: copy(UInt8.self)
    case 2: copy(UInt16.self)
    case 4: copy(UInt32.self)
    default: copy(UInt64.self)
    }
  }

  private func copy<T: FixedWidthInteger>(_: T.Type) {
    let input = source.assumingMemoryBound(to: T.self)
    let output = destination.assumingMemoryBound(to: T.self)
    let fill = T(truncatingIfNeeded: fillBits)
    let outer = groupCount - 1
    let innerCount = sizes[outer]
    let innerIn = UnsafePointer(tables + starts[outer])
    let innerOut = innerIn + innerCount
    for g in 0..<groupCount { counters[g] = 0 }
    while true {
      var inBase = 0
      var outBase = 0
      var fillRow = false
      for g in 0..<outer {
        let table = tables + starts[g]
        let v = table[counters[g]]
        if v < 0 { fillRow = true }
        inBase &+= v
        outBase &+= table[sizes[g] + counters[g]]
      }
      if fillRow {
        for j in 0..<innerCount { output[outBase + innerOut[j]] = fill }
      } else if innerContiguous {
        (output + outBase + innerOut[0]).update(
          from: input + inBase + innerIn[0], count: innerCount)
      } else if hasFill {
        for j in 0..<innerCount {
          let v = innerIn[j]
          output[outBase + innerOut[j]] = v < 0 ? fill : input[inBase + v]
        }
      } else {
        for j in 0..<innerCount { output[outBase + innerOut[j]] = input[inBase + innerIn[j]] }
      }
      var g = outer - 1
      while g >= 0 {
        counters[g] += 1
        if counters[g] < sizes[g] { break }
        counters[g] = 0
        g -= 1
      }
      if g < 0 { return }
    }
  }
}

/// Gather along one axis with indices computed at run time: rewrites the gathered group's input
/// table from the indices buffer, rejecting out-of-range indices, then copies.
final class RuntimeGather: FloatKernel {
  let implementation = "swift:gather"
  private let copy: IndexedCopy
  private let group: Int
  private let indices: UnsafeRawPointer
  private let indexType: ElementType
  /// Physical element offset of each index, in the indices' logical order.
  private let indexOffsets: [Int]
  private let dimension: Int
  private let stride: Int
  private let node: String

  init(
    copy: IndexedCopy, group: Int, indices: UnsafeRawPointer, indexType: ElementType,
    indexOffsets: [Int], dimension: Int, stride: Int, node: String
  ) {
    self.copy = copy
    self.group = group
    self.indices = indices
    self.indexType = indexType
    self.indexOffsets = indexOffsets
    self.dimension = dimension
    self.stride = stride
    self.node = node
  }

  func run() throws {
    let table = copy.inputTable(group)
    try indexOffsets.withUnsafeBufferPointer { offsets in
      for j in 0..<offsets.count {
        let raw: Int64
        switch indexType {
        case .int64: raw = indices.load(fromByteOffset: offsets[j] * 8, as: Int64.self)
        case .int32: raw = Int64(indices.load(fromByteOffset: offsets[j] * 4, as: Int32.self))
        case .int8: raw = Int64(indices.load(fromByteOffset: offsets[j], as: Int8.self))
        case .uint8: raw = Int64(indices.load(fromByteOffset: offsets[j], as: UInt8.self))
        case .float32:
          throw ModelError(.invalidNode, "node '\(node)' (Gather): indices must be integers")
        }
        let i = raw < 0 ? raw + Int64(dimension) : raw
        guard i >= 0, i < Int64(dimension) else {
          throw ModelError(
            .invalidNode,
            "node '\(node)' (Gather): index \(raw) is out of range for dimension \(dimension)")
        }
        table[j] = Int(i) * stride
      }
    }
    try copy.run()
  }
}

/// Element type conversion with the reference evaluator's rules: float to integer truncates
/// toward zero (saturating to the int64 range, non-finite values become 0), then integers
/// narrow by truncating bits like a C cast.
final class CastKernel: FloatKernel {
  let implementation = "swift:cast"
  private let source: UnsafeRawPointer
  private let destination: UnsafeMutableRawPointer
  private let from: ElementType
  private let to: ElementType
  private let count: Int

  init(
    source: UnsafeRawPointer, from: ElementType, destination: UnsafeMutableRawPointer,
    to: ElementType, count: Int
  ) {
    self.source = source
    self.destination = destination
    self.from = from
    self.to = to
    self.count = count
  }

  func run() throws {
    if from == to {
      destination.copyMemory(from: source, byteCount: count * from.byteCount)
      return
    }
    if from == .float32 {
      let input = source.assumingMemoryBound(to: Float.self)
      if to == .int64 {
        let output = destination.assumingMemoryBound(to: Int64.self)
        for i in 0..<count { output[i] = Self.truncate(input[i]) }
      } else {
        for i in 0..<count { store(Self.truncate(input[i]), at: i) }
      }
      return
    }
    for i in 0..<count {
      let v: Int64
      switch from {
      case .int64: v = source.load(fromByteOffset: i * 8, as: Int64.self)
      case .int32: v = Int64(source.load(fromByteOffset: i * 4, as: Int32.self))
      case .int8: v = Int64(source.load(fromByteOffset: i, as: Int8.self))
      case .uint8: v = Int64(source.load(fromByteOffset: i, as: UInt8.self))
      case .float32: v = 0
      }
      store(v, at: i)
    }
  }

  @inline(__always)
  private func store(_ v: Int64, at i: Int) {
    switch to {
    case .float32: destination.storeBytes(of: Float(v), toByteOffset: i * 4, as: Float.self)
    case .int64: destination.storeBytes(of: v, toByteOffset: i * 8, as: Int64.self)
    case .int32:
      destination.storeBytes(of: Int32(truncatingIfNeeded: v), toByteOffset: i * 4, as: Int32.self)
    case .int8:
      destination.storeBytes(of: Int8(truncatingIfNeeded: v), toByteOffset: i, as: Int8.self)
    case .uint8:
      destination.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
    }
  }

  @inline(__always)
  static func truncate(_ x: Float) -> Int64 {
    guard x.isFinite else { return 0 }
    // 2^63 is exactly representable; anything at or beyond it saturates.
    if x >= 9.223_372_036_854_775_807e18 { return .max }
    if x <= -9.223_372_036_854_775_807e18 { return .min }
    return Int64(x.rounded(.towardZero))
  }
}

/// Mean over some axes for the layouts oneDNN's reduction only covers with its reference
/// kernel: each output element sums the input at `kept[k] + reduced[r]` over all `r`.
final class MeanKernel: FloatKernel {
  let implementation = "swift:reduce-mean"
  private let source: UnsafePointer<Float>
  private let destination: UnsafeMutablePointer<Float>
  private let keptInput: [Int]
  private let keptOutput: [Int]
  private let reduced: [Int]

  init(
    source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, keptInput: [Int],
    keptOutput: [Int], reduced: [Int]
  ) {
    self.source = source
    self.destination = destination
    self.keptInput = keptInput
    self.keptOutput = keptOutput
    self.reduced = reduced
  }

  func run() throws {
    let scale = 1 / Float(max(reduced.count, 1))
    keptInput.withUnsafeBufferPointer { keptInput in
      keptOutput.withUnsafeBufferPointer { keptOutput in
        reduced.withUnsafeBufferPointer { reduced in
          for k in 0..<keptInput.count {
            let base = source + keptInput[k]
            var sum: Float = 0
            for r in 0..<reduced.count { sum += base[reduced[r]] }
            destination[keptOutput[k]] = sum * scale
          }
        }
      }
    }
  }
}

/// Max pooling for the geometries oneDNN only covers with its reference kernel (dilated
/// windows): every output position has a list of input offsets of its taps (-1: padding).
final class MaxPoolKernel: FloatKernel {
  let implementation = "swift:max-pool"
  private let source: UnsafePointer<Float>
  private let destination: UnsafeMutablePointer<Float>
  private let batch: Int
  private let channels: Int
  private let strides: (inputBatch: Int, inputChannel: Int, outputBatch: Int, outputChannel: Int)
  private let positions: [Int]
  private let taps: [Int]
  private let tapCount: Int

  init(
    source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, batch: Int,
    channels: Int,
    strides: (inputBatch: Int, inputChannel: Int, outputBatch: Int, outputChannel: Int),
    positions: [Int], taps: [Int], tapCount: Int
  ) {
    self.source = source
    self.destination = destination
    self.batch = batch
    self.channels = channels
    self.strides = strides
    self.positions = positions
    self.taps = taps
    self.tapCount = tapCount
  }

  func run() throws {
    positions.withUnsafeBufferPointer { positions in
      taps.withUnsafeBufferPointer { taps in
        guard let first = taps.baseAddress else { return }
        for n in 0..<batch {
          for (p, position) in positions.enumerated() {
            let window = first + p * tapCount
            for c in 0..<channels {
              let base = source + n * strides.inputBatch + c * strides.inputChannel
              var best = -Float.infinity
              for t in 0..<tapCount where window[t] >= 0 { best = max(best, base[window[t]]) }
              destination[n * strides.outputBatch + c * strides.outputChannel + position] = best
            }
          }
        }
      }
    }
  }
}
