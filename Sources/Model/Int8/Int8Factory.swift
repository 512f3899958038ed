import Foundation

extension Int8Engine {
  /// Calibrates `graph` on up to `calibrationImages` images from `nextBatch` (see
  /// `calibrate`) and builds the engine: the one call a command needs. The calibration and
  /// its warnings stay available as `calibration`.
  public static func make(
    graph: Graph, batchSize: Int, calibrationImages: Int,
    settings: Int8Settings = Int8Settings(), threads: Int? = nil,
    nextBatch: (UnsafeMutableBufferPointer<Float>) throws -> Int
  ) throws -> Int8Engine {
    try checkFloatNodes(settings.floatNodes, in: graph)
    let calibration = try calibrate(
      graph: graph, batchSize: batchSize, imageCount: calibrationImages, settings: settings,
      threads: threads, nextBatch: nextBatch)
    return try Int8Engine(
      graph: graph, batchSize: batchSize, calibration: calibration, settings: settings,
      threads: threads)
  }

  /// Throws an error naming the first `floatNodes` entry that is not a node of `graph`.
  static func checkFloatNodes(_ names: Set<String>, in graph: Graph) throws {
    let known = Set(graph.nodes.map(\.name))
    for name in names.sorted() where !known.contains(name) {
      throw ModelError(.invalidGraph, "floatNodes: the model has no node named '\(name)'")
    }
  }
}
