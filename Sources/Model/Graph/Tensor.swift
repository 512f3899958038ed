/// The element types the IR can carry.
///
/// Float models use `float32` for activations and weights and `int64` for shape arithmetic;
/// the quantised ops (QuantizeLinear/DequantizeLinear) add `int8`, `uint8` and `int32`.
public enum ElementType: String, Sendable, Equatable, CaseIterable {
  /// IEEE single precision.
  case float32
  /// Signed 8-bit (quantised tensors).
  case int8
  /// Unsigned 8-bit (quantised tensors).
  case uint8
  /// Signed 32-bit (quantised biases).
  case int32
  /// Signed 64-bit (shapes and indices).
  case int64

  /// Bytes per element, used by the memory planner.
  public var byteCount: Int {
    switch self {
    case .float32, .int32: 4
    case .int8, .uint8: 1
    case .int64: 8
    }
  }
}

/// The elements of a constant tensor, row-major, in one of the IR's element types.
public enum TensorStorage: Sendable, Equatable {
  /// float32 elements.
  case float32([Float])
  /// int64 elements.
  case int64([Int64])
  /// int32 elements.
  case int32([Int32])
  /// int8 elements.
  case int8([Int8])
  /// uint8 elements.
  case uint8([UInt8])
}

/// A dense tensor held in memory: the constants of a graph (weights, shape vectors) and the
/// values the reference evaluator computes.
public struct Tensor: Sendable, Equatable {
  /// Dimensions, outermost first; `[]` is a scalar.
  public var shape: [Int]
  /// Row-major elements; their count equals `shape.reduce(1, *)`.
  public var storage: TensorStorage

  /// Creates a tensor; the caller guarantees the element count matches the shape.
  public init(shape: [Int], storage: TensorStorage) {
    self.shape = shape
    self.storage = storage
  }

  /// A float32 tensor.
  public init(shape: [Int], floats: [Float]) {
    self.init(shape: shape, storage: .float32(floats))
  }

  /// An int64 tensor.
  public init(shape: [Int], int64s: [Int64]) {
    self.init(shape: shape, storage: .int64(int64s))
  }

  /// The element type of `storage`.
  public var elementType: ElementType {
    switch storage {
    case .float32: .float32
    case .int64: .int64
    case .int32: .int32
    case .int8: .int8
    case .uint8: .uint8
    }
  }

  /// Number of elements.
  public var elementCount: Int { shape.reduce(1, *) }

  /// The elements if this is a float32 tensor.
  public var floats: [Float]? {
    if case .float32(let v) = storage { return v }
    return nil
  }

  /// The elements converted to `Int64` if this is an integer tensor (shape arithmetic accepts
  /// any integer type).
  public var integers: [Int64]? {
    switch storage {
    case .int64(let v): v
    case .int32(let v): v.map(Int64.init)
    case .int8(let v): v.map(Int64.init)
    case .uint8(let v): v.map(Int64.init)
    case .float32: nil
    }
  }

  /// The elements converted to `Float` (integers widen exactly up to 2^24).
  public var floatValues: [Float] {
    switch storage {
    case .float32(let v): v
    case .int64(let v): v.map { Float($0) }
    case .int32(let v): v.map { Float($0) }
    case .int8(let v): v.map { Float($0) }
    case .uint8(let v): v.map { Float($0) }
    }
  }
}
