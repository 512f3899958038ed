import CFloatKernels
import Foundation
import TestSupport
import Testing

@testable import Model

extension Trait where Self == ConditionTrait {
  /// Skips a suite of one of the float engine's AVX-512 kernels, saying why, on a CPU without
  /// AVX-512 F, where the engine keeps `fallback` instead.
  static func requiresAVX512F(otherwise fallback: String) -> Self {
    .enabled(
      if: ie_float_has_avx512f() != 0,
      Comment(rawValue: "this CPU has no AVX-512 F; the engine keeps \(fallback)"))
  }
}

/// The seeded generator of the model tests (TestSupport's SplitMix64).
typealias SeededGenerator = SplitMix64

func randomValues(_ count: Int, seed: UInt64, in range: ClosedRange<Float> = -1...1) -> [Float] {
  var generator = SeededGenerator(seed: seed)
  return (0..<count).map { _ in Float.random(in: range, using: &generator) }
}

/// A node of a reference ONNX graph (see scripts/reference/dnnl_onnx_graph.py).
struct ReferenceNode: Encodable {
  enum Attribute: Encodable {
    case int(Int)
    case float(Float)
    case ints([Int])
    case string(String)
    func encode(to encoder: Encoder) throws {
      var container = encoder.singleValueContainer()
      switch self {
      case .int(let v): try container.encode(v)
      case .float(let v): try container.encode(v)
      case .ints(let v): try container.encode(v)
      case .string(let v): try container.encode(v)
      }
    }
  }
  var op: String
  var inputs: [String]
  var outputs: [String]
  var attributes: [String: Attribute] = [:]
}

/// A named float32 tensor in ONNX's logical (NCHW, row-major) order.
struct ReferenceTensor {
  var name: String
  var shape: [Int]
  var values: [Float]
}

/// Runs a small ONNX graph in onnxruntime and returns its output (shape and row-major values).
func onnxReference(
  nodes: [ReferenceNode], inputs: [ReferenceTensor], output: String, opset: Int = 20
) throws -> ReferenceTensor {
  let directory = try TestEnvironment.makeTemporaryDirectory("dnnl-ref")
  defer { try? FileManager.default.removeItem(at: directory) }
  struct Input: Encodable {
    var name: String
    var shape: [Int]
    var file: String
  }
  struct Spec: Encodable {
    var opset: Int
    var inputs: [Input]
    var nodes: [ReferenceNode]
    var output: String
    var output_file: String
  }
  var specInputs: [Input] = []
  for tensor in inputs {
    let url = directory.appendingPathComponent("\(tensor.name).f32")
    try tensor.values.withUnsafeBufferPointer { try Data(buffer: $0).write(to: url) }
    specInputs.append(Input(name: tensor.name, shape: tensor.shape, file: url.path))
  }
  let outputURL = directory.appendingPathComponent("output.f32")
  let spec = Spec(
    opset: opset, inputs: specInputs, nodes: nodes, output: output, output_file: outputURL.path)
  let specURL = directory.appendingPathComponent("spec.json")
  try JSONEncoder().encode(spec).write(to: specURL)
  let printed = try PythonReference.run(
    script: "scripts/reference/dnnl_onnx_graph.py", arguments: [specURL.path])
  let shape = try JSONDecoder().decode([Int].self, from: Data(printed.utf8))
  let data = try Data(contentsOf: outputURL)
  let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
  return ReferenceTensor(name: output, shape: shape, values: values)
}

/// An aligned heap buffer freed when the last reference goes away.
final class AlignedBuffer {
  let pointer: UnsafeMutableRawPointer
  init(byteCount: Int) {
    pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
    pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 1))
  }
  deinit { pointer.deallocate() }
}

/// A buffer owned by the test plus the oneDNN memory that wraps it. The memory keeps the
/// buffer alive, so passing only `.memory` to a primitive is safe.
final class OwnedMemory {
  let memory: DNNLMemory
  private let storage: AlignedBuffer
  var buffer: UnsafeMutableRawPointer { storage.pointer }
  var descriptor: DNNLMemoryDescriptor { memory.descriptor }

  init(_ descriptor: DNNLMemoryDescriptor, engine: DNNLEngine) throws {
    storage = AlignedBuffer(byteCount: descriptor.byteCount)
    memory = try DNNLMemory(descriptor, engine: engine, buffer: storage.pointer)
    memory.owner = storage
  }

  var floats: UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(
      start: buffer.assumingMemoryBound(to: Float.self), count: descriptor.byteCount / 4)
  }
}

/// Moves row-major float data in and out of memories of any layout through reorders, so the
/// tests compare in ONNX's logical order whatever layout the primitive uses.
struct LayoutHelper {
  let engine: DNNLEngine

  static func plainFormat(rank: Int) -> DNNLFormat {
    switch rank {
    case 1: return .a
    case 2: return .ab
    case 3: return .abc
    case 4: return .abcd
    default: return .abcde
    }
  }

  /// A memory in `descriptor`'s layout holding `values` given in row-major logical order.
  func memory(_ descriptor: DNNLMemoryDescriptor, values: [Float]) throws -> OwnedMemory {
    let plain = try OwnedMemory(
      DNNLMemoryDescriptor(
        dims: descriptor.dims, dataType: .f32, format: Self.plainFormat(rank: descriptor.dims.count)
      ),
      engine: engine)
    #expect(plain.floats.count == values.count)
    _ = plain.floats.update(fromContentsOf: values)
    let target = try OwnedMemory(descriptor, engine: engine)
    try engine.makeReorder(from: plain.descriptor, to: descriptor)
      .execute([(.source, plain.memory), (.destination, target.memory)])
    return target
  }

  /// The contents of `memory` in row-major logical order.
  func values(of memory: OwnedMemory) throws -> [Float] {
    let plain = try OwnedMemory(
      DNNLMemoryDescriptor(
        dims: memory.descriptor.dims, dataType: .f32,
        format: Self.plainFormat(rank: memory.descriptor.dims.count)),
      engine: engine)
    try engine.makeReorder(from: memory.descriptor, to: plain.descriptor)
      .execute([(.source, memory.memory), (.destination, plain.memory)])
    return Array(plain.floats)
  }
}

/// Asserts `actual` matches `expected` within 1e-4 of the expected output's range.
func expectClose(
  _ actual: [Float], _ expected: ReferenceTensor, _ label: String,
  sourceLocation: SourceLocation = #_sourceLocation
) {
  #expect(
    actual.count == expected.values.count,
    "\(label): \(actual.count) values vs reference shape \(expected.shape)",
    sourceLocation: sourceLocation)
  guard actual.count == expected.values.count, !actual.isEmpty else { return }
  let range = (expected.values.max() ?? 0) - (expected.values.min() ?? 0)
  let tolerance = 1e-4 * max(range, 1e-3)
  var worst: (index: Int, difference: Float) = (0, 0)
  for index in actual.indices {
    var difference = abs(actual[index] - expected.values[index])
    if difference.isNaN { difference = .infinity }
    if difference > worst.difference { worst = (index, difference) }
  }
  #expect(
    worst.difference <= tolerance,
    "\(label): max |diff| \(worst.difference) at \(worst.index) (got \(actual[worst.index]), want \(expected.values[worst.index])) > tolerance \(tolerance)",
    sourceLocation: sourceLocation)
}
