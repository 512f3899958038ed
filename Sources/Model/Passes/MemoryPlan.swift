/// Where each intermediate value lives in one arena, chosen by liveness.
///
/// Planned values are the outputs of nodes (graph outputs included); graph inputs (the
/// caller's buffer) and constants are not in the arena. A value is live from the node that
/// writes it to the last node that reads it (graph outputs: to the end). Two values whose
/// live ranges overlap never share bytes, except that an op that may run in place (see
/// `MemoryPlan.mayRunInPlace`) writes its output over an input that dies at it, and a Conv
/// with a `.sum` post-op always writes over its sum operand.
public struct MemoryPlan: Sendable, Equatable {
  /// Byte offset of each planned value in the arena.
  public var offsets: [ValueID: Int]
  /// Byte size of each planned value (element count × element size).
  public var sizes: [ValueID: Int]
  /// Total arena bytes needed.
  public var arenaSize: Int
  /// Offsets are multiples of this many bytes.
  public static let alignment = 64

  /// Plans `graph`, whose shapes must be inferred.
  public init(_ graph: Graph) throws {
    var firstWrite: [ValueID: Int] = [:]
    var lastRead: [ValueID: Int] = [:]
    for (i, node) in graph.nodes.enumerated() {
      for v in node.outputs { firstWrite[v] = i }
      for v in node.inputs { lastRead[v] = i }
    }
    for v in graph.outputs { lastRead[v] = graph.nodes.count }

    var offsets: [ValueID: Int] = [:]
    var sizes: [ValueID: Int] = [:]
    // Live blocks: value -> (offset, padded size).
    var live: [ValueID: (Int, Int)] = [:]
    var arena = 0
    for (i, node) in graph.nodes.enumerated() {
      for (k, v) in node.outputs.enumerated() {
        let bytes = try graph.shape(of: v).reduce(1, *) * graph.values[v].elementType.byteCount
        let padded = (bytes + Self.alignment - 1) / Self.alignment * Self.alignment
        sizes[v] = bytes
        var donor: ValueID?
        if k == 0 {
          if let s = node.sumOperand, live[s] != nil {
            donor = s
          } else if Self.mayRunInPlace(node.op) {
            donor = node.inputs.first { input in
              guard let block = live[input], lastRead[input] == i, block.1 >= padded,
                graph.values[input].shape == graph.values[v].shape || Self.isView(node.op)
              else { return false }
              return true
            }
          }
        }
        if let donor, let block = live[donor], block.1 >= padded {
          // The output takes over the dying input's bytes.
          live[donor] = nil
          offsets[v] = block.0
          live[v] = block
          continue
        }
        // First fit among the gaps between live blocks.
        var offset = 0
        for block in live.values.sorted(by: { $0.0 < $1.0 }) {
          if offset + padded <= block.0 { break }
          offset = max(offset, block.0 + block.1)
        }
        offsets[v] = offset
        live[v] = (offset, padded)
        arena = max(arena, offset + padded)
      }
      for v in Set(node.inputs) where lastRead[v] == i && live[v] != nil { live[v] = nil }
      for v in node.outputs where lastRead[v] == nil { live[v] = nil }
    }
    self.offsets = offsets
    self.sizes = sizes
    self.arenaSize = arena
  }

  /// Ops whose output may overwrite an input of the same size as they compute: element-wise
  /// ops (each output element depends only on the same input element) and pure views.
  public static func mayRunInPlace(_ op: Op) -> Bool {
    switch op {
    case .activation, .erf, .binary, .scaleShift, .batchNormalization: true
    default: isView(op)
    }
  }

  /// Ops that only reinterpret the shape: the output bytes equal the input bytes.
  public static func isView(_ op: Op) -> Bool {
    switch op {
    case .reshape, .flatten, .squeeze, .unsqueeze, .identity: true
    default: false
    }
  }
}
