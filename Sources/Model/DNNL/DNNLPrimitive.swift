import CDNNL

/// A created oneDNN primitive with its primitive descriptor, which knows the memory layouts it
/// chose and the name of the kernel implementation it dispatched to.
final class DNNLPrimitive {
  /// What this primitive computes, for error messages (e.g. `convolution 'stem.conv'`).
  let name: String
  /// The implementation oneDNN picked, e.g. `brg:avx512_core` or `jit:avx512_core`; anything
  /// containing `ref` is a slow scalar fallback.
  let implementation: String
  let descriptor: dnnl_primitive_desc_t
  let primitive: dnnl_primitive_t
  let engine: DNNLEngine
  /// The engine's user-mode scratchpad viewed with this primitive's scratchpad descriptor;
  /// nil in library mode or when the primitive needs none.
  private let scratchpadMemory: DNNLMemory?

  /// Takes ownership of a primitive descriptor, creates the primitive, and enforces the
  /// engine's strict mode.
  init(name: String, engine: DNNLEngine, descriptor: dnnl_primitive_desc_t) throws {
    var implString: UnsafePointer<CChar>?
    let queried = dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &implString)
    let implementation =
      queried == dnnl_success ? implString.map { String(cString: $0) } ?? "?" : "?"
    if engine.strict && Self.isReference(implementation) {
      dnnl_primitive_desc_destroy(descriptor)
      throw DNNLError(
        operation: name,
        reason: "oneDNN chose the reference implementation '\(implementation)' (strict mode)")
    }
    let primitive: dnnl_primitive_t = try dnnlCreate(
      "creating \(name)", returning: "primitive",
      onFailure: { dnnl_primitive_desc_destroy(descriptor) }
    ) { dnnl_primitive_create(&$0, descriptor) }
    self.name = name
    self.implementation = implementation
    self.descriptor = descriptor
    self.primitive = primitive
    self.engine = engine
    var scratchpadMemory: DNNLMemory?
    if let scratchpad = engine.scratchpad,
      let md = dnnl_primitive_desc_query_md(descriptor, dnnl_query_scratchpad_md, 0),
      md.pointee.ndims > 0
    {
      let scratchpadDescriptor = DNNLMemoryDescriptor(raw: md.pointee)
      if scratchpadDescriptor.byteCount > 0 {
        scratchpadMemory = try scratchpad.memory(for: scratchpadDescriptor, engine: engine)
      }
    }
    self.scratchpadMemory = scratchpadMemory
  }

  deinit {
    dnnl_primitive_destroy(primitive)
    dnnl_primitive_desc_destroy(descriptor)
  }

  static func isReference(_ implementation: String) -> Bool {
    implementation.lowercased().contains("ref")
  }

  /// True when oneDNN fell back to a scalar reference kernel.
  var usesReferenceImplementation: Bool { Self.isReference(implementation) }

  /// Memory roles a primitive descriptor can be asked about.
  enum Role {
    case source, weights, bias, destination, scratchpad

    var query: (what: dnnl_query_t, index: Int32) {
      switch self {
      case .source: return (dnnl_query_src_md, 0)
      case .weights: return (dnnl_query_weights_md, 0)
      case .bias: return (dnnl_query_weights_md, 1)
      case .destination: return (dnnl_query_dst_md, 0)
      case .scratchpad: return (dnnl_query_scratchpad_md, 0)
      }
    }
  }

  /// The layout the primitive expects for `role` (the resolved one where `any` was passed).
  func memoryDescriptor(_ role: Role) -> DNNLMemoryDescriptor? {
    let q = role.query
    guard let md = dnnl_primitive_desc_query_md(descriptor, q.what, q.index) else { return nil }
    let result = DNNLMemoryDescriptor(raw: md.pointee)
    return result.raw.ndims == 0 ? nil : result
  }

  /// Runs once with the given arguments and waits; convenient at build time (weight reorders)
  /// and in tests. Steady-state code binds once and calls `DNNLExecution.run()`.
  func execute(_ arguments: [(DNNLArgument, DNNLMemory)]) throws {
    try bind(arguments).run()
    try engine.wait()
  }

  /// Fixes the arguments so repeated runs allocate nothing.
  func bind(_ arguments: [(DNNLArgument, DNNLMemory)]) -> DNNLExecution {
    guard let scratchpadMemory else { return DNNLExecution(primitive: self, arguments: arguments) }
    return DNNLExecution(primitive: self, arguments: arguments + [(.scratchpad, scratchpadMemory)])
  }
}

/// A primitive with its arguments bound; memories can still be rebound to other buffers with
/// `DNNLMemory.setBuffer`.
final class DNNLExecution {
  let primitive: DNNLPrimitive
  private let memories: [DNNLMemory]
  private let arguments: [dnnl_exec_arg_t]

  init(primitive: DNNLPrimitive, arguments: [(DNNLArgument, DNNLMemory)]) {
    self.primitive = primitive
    self.memories = arguments.map(\.1)
    self.arguments = arguments.map { dnnl_exec_arg_t(arg: $0.0.rawValue, memory: $0.1.handle) }
  }

  /// Submits the primitive to the engine's stream (the CPU stream runs it before returning).
  @inline(__always)
  func run() throws {
    let status = arguments.withUnsafeBufferPointer { args in
      dnnl_primitive_execute(
        primitive.primitive, primitive.engine.stream, Int32(args.count), args.baseAddress)
    }
    if status != dnnl_success { try dnnlCheck(status, "executing \(primitive.name)") }
  }
}
