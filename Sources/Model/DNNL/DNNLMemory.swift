import CDNNL

/// Element types the engines use: float activations and weights, and the int8 path's
/// quantised activations (u8/s8), weights (s8) and accumulators/biases (s32).
enum DNNLDataType: CaseIterable, Sendable {
  case f32, s8, u8, s32

  var raw: dnnl_data_type_t {
    switch self {
    case .f32: return dnnl_f32
    case .s8: return dnnl_s8
    case .u8: return dnnl_u8
    case .s32: return dnnl_s32
    }
  }

  var byteWidth: Int { self == .s8 || self == .u8 ? 1 : 4 }
}

/// Memory layouts by oneDNN's letter notation (`a` is the outermost logical dimension). `any`
/// lets a primitive choose, which is how weights get their blocked, kernel-friendly layout.
enum DNNLFormat: Sendable {
  case any
  case a, ab, ba, abc, acb, abcd, acdb, abcde
  case aBcd16b
  /// 2D activations, logical N×C×H×W.
  static let nchw = DNNLFormat.abcd
  /// Channels-last 2D activations; the layout every fast kernel here expects.
  static let nhwc = DNNLFormat.acdb
  /// 2D activations with channels in blocks of 16 (N×C/16×H×W×16): oneDNN's Winograd
  /// convolutions take no other layout.
  static let nChw16c = DNNLFormat.aBcd16b
  /// Convolution weights O×I×H×W (ONNX's layout).
  static let oihw = DNNLFormat.abcd
  /// Grouped convolution weights G×O×I×H×W (ONNX's layout split by group).
  static let goihw = DNNLFormat.abcde

  var raw: dnnl_format_tag_t {
    switch self {
    case .any: return dnnl_format_tag_any
    case .a: return dnnl_a
    case .ab: return dnnl_ab
    case .ba: return dnnl_ba
    case .abc: return dnnl_abc
    case .acb: return dnnl_acb
    case .abcd: return dnnl_abcd
    case .acdb: return dnnl_acdb
    case .abcde: return dnnl_abcde
    case .aBcd16b: return dnnl_aBcd16b
    }
  }
}

/// A oneDNN memory descriptor: logical dimensions, element type and physical layout.
struct DNNLMemoryDescriptor: CustomStringConvertible {
  var raw: dnnl_memory_desc_t

  init(raw: dnnl_memory_desc_t) { self.raw = raw }

  /// A dense tensor in one of the named layouts.
  init(dims: [Int], dataType: DNNLDataType, format: DNNLFormat) throws {
    try Self.validate(dims)
    var md = dnnl_memory_desc_t()
    let dims64 = Self.padded(dims)
    try dnnlCheck(
      dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), dims64, dataType.raw, format.raw),
      "memory descriptor \(dims) \(dataType) \(format)")
    raw = md
  }

  /// A tensor with explicit element strides, e.g. a channel slice of an NHWC buffer.
  init(dims: [Int], dataType: DNNLDataType, strides: [Int]) throws {
    try Self.validate(dims)
    guard strides.count == dims.count else {
      throw DNNLError(
        operation: "memory descriptor \(dims)",
        reason: "\(strides.count) strides for \(dims.count) dims")
    }
    var md = dnnl_memory_desc_t()
    try dnnlCheck(
      dnnl_memory_desc_init_by_strides(
        &md, Int32(dims.count), Self.padded(dims), dataType.raw, Self.padded(strides)),
      "memory descriptor \(dims) \(dataType) strides \(strides)")
    raw = md
  }

  /// Logical dimensions, outermost first.
  var dims: [Int] {
    withUnsafeBytes(of: raw.dims) { buffer in
      buffer.bindMemory(to: Int64.self).prefix(Int(raw.ndims)).map { Int($0) }
    }
  }

  /// Strides in elements when the layout is plain blocked (non-blocked formats have no inner
  /// blocks); nil for `any` and for blocked layouts such as `nChw16c`.
  var strides: [Int]? {
    guard raw.format_kind == dnnl_blocked, raw.format_desc.blocking.inner_nblks == 0 else {
      return nil
    }
    return withUnsafeBytes(of: raw.format_desc.blocking.strides) { buffer in
      buffer.bindMemory(to: Int64.self).prefix(Int(raw.ndims)).map { Int($0) }
    }
  }

  /// True while the layout is still left for a primitive to choose.
  var isFormatAny: Bool { raw.format_kind == dnnl_format_kind_any }

  /// Bytes a buffer for this descriptor needs (including any blocking padding).
  var byteCount: Int {
    withUnsafePointer(to: raw) { dnnl_memory_desc_get_size($0) }
  }

  /// A view of a sub-block of this tensor (same layout and strides), e.g. channels `0..<C/4`.
  func submemory(dims: [Int], offsets: [Int]) throws -> DNNLMemoryDescriptor {
    var md = dnnl_memory_desc_t()
    let status = withUnsafePointer(to: raw) {
      dnnl_memory_desc_init_submemory(&md, $0, Self.padded(dims), Self.padded(offsets))
    }
    try dnnlCheck(status, "sub-memory \(dims) at \(offsets) of \(description)")
    return DNNLMemoryDescriptor(raw: md)
  }

  /// The same bytes seen with other dimensions (e.g. N×C×1×1 as N×C).
  func reshaped(_ dims: [Int]) throws -> DNNLMemoryDescriptor {
    try Self.validate(dims)
    var md = dnnl_memory_desc_t()
    let status = withUnsafePointer(to: raw) {
      dnnl_memory_desc_reshape(&md, $0, Int32(dims.count), Self.padded(dims))
    }
    try dnnlCheck(status, "reshaping \(description) to \(dims)")
    return DNNLMemoryDescriptor(raw: md)
  }

  var description: String {
    let layout: String
    if isFormatAny {
      layout = "any"
    } else if let strides {
      layout = "strides \(strides)"
    } else {
      layout = "blocked"
    }
    return "\(dims.map(String.init).joined(separator: "x")) \(raw.data_type) \(layout)"
  }

  static func == (lhs: DNNLMemoryDescriptor, rhs: DNNLMemoryDescriptor) -> Bool {
    withUnsafePointer(to: lhs.raw) { l in
      withUnsafePointer(to: rhs.raw) { r in dnnl_memory_desc_equal(l, r) != 0 }
    }
  }

  private static func validate(_ dims: [Int]) throws {
    guard (1...Int(DNNL_MAX_NDIMS)).contains(dims.count), dims.allSatisfy({ $0 > 0 }) else {
      throw DNNLError(operation: "memory descriptor \(dims)", reason: "invalid dimensions")
    }
  }

  /// oneDNN takes fixed `dnnl_dims_t` arrays; unused trailing entries must exist but are ignored.
  static func padded(_ values: [Int]) -> [Int64] {
    var result = [Int64](repeating: 0, count: Int(DNNL_MAX_NDIMS))
    for (index, value) in values.prefix(result.count).enumerated() { result[index] = Int64(value) }
    return result
  }
}

/// A oneDNN memory object: a descriptor bound to a buffer.
///
/// Either wraps a caller-owned buffer without copying (the caller keeps it alive and may swap it
/// with `setBuffer`), or owns a buffer the library allocated (for reordered weights).
final class DNNLMemory {
  let descriptor: DNNLMemoryDescriptor
  let handle: dnnl_memory_t
  // Memories must not outlive their engine.
  private let engine: DNNLEngine
  /// Whatever owns a wrapped buffer, kept alive as long as this memory is: Swift may release
  /// an owner right after its last visible use, which can precede the primitive's execution.
  var owner: AnyObject?

  /// Wraps `buffer` (which must hold `descriptor.byteCount` bytes); nil binds no buffer yet.
  init(_ descriptor: DNNLMemoryDescriptor, engine: DNNLEngine, buffer: UnsafeMutableRawPointer?)
    throws
  {
    var memory: dnnl_memory_t?
    let status = withUnsafePointer(to: descriptor.raw) {
      dnnl_memory_create(&memory, $0, engine.engine, buffer)
    }
    try dnnlCheck(status, "memory for \(descriptor)")
    guard let memory else {
      throw DNNLError(operation: "memory for \(descriptor)", reason: "no memory returned")
    }
    self.descriptor = descriptor
    self.handle = memory
    self.engine = engine
  }

  /// A memory whose buffer oneDNN allocates and frees.
  convenience init(allocating descriptor: DNNLMemoryDescriptor, engine: DNNLEngine) throws {
    // DNNL_MEMORY_ALLOCATE is ((void *)(size_t)-1), a macro Swift cannot import.
    try self.init(descriptor, engine: engine, buffer: UnsafeMutableRawPointer(bitPattern: -1))
  }

  deinit { dnnl_memory_destroy(handle) }

  /// The buffer currently bound.
  var buffer: UnsafeMutableRawPointer? {
    var pointer: UnsafeMutableRawPointer?
    guard dnnl_memory_get_data_handle(handle, &pointer) == dnnl_success else { return nil }
    return pointer
  }

  /// Rebinds the memory to another caller-owned buffer (no allocation).
  func setBuffer(_ pointer: UnsafeMutableRawPointer?) throws {
    try dnnlCheck(dnnl_memory_set_data_handle(handle, pointer), "rebinding memory \(descriptor)")
  }
}
