import CDNNL

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A CPU engine and its in-order stream: everything a primitive needs to be created and run.
///
/// In strict mode every primitive created through this engine is checked for a reference
/// ("ref") implementation, which in oneDNN means a scalar fallback hundreds of times slower than
/// the JIT kernels; creation then throws instead of silently running slowly.
final class DNNLEngine {
  let engine: dnnl_engine_t
  let stream: dnnl_stream_t
  /// Throw on reference implementations instead of accepting them.
  var strict: Bool
  /// OpenMP threads used for runs started from the calling thread; nil: `OpenMPRuntime.defaultThreadCount`.
  let threads: Int?
  /// Primitives get user-mode scratchpads, one buffer per engine (`scratchpad`), instead of
  /// the library's: in library mode oneDNN 2.6 hands every primitive created on one thread the
  /// same thread-local global scratchpad, which two engines running concurrently on other
  /// threads (batch shards) would share.
  let usesUserScratchpad: Bool
  /// The user-mode scratchpad buffer, grown to the largest primitive's need; nil otherwise.
  let scratchpad: DNNLScratchpad?

  init(threads: Int? = nil, strict: Bool = false, userScratchpad: Bool = false) throws {
    let engine: dnnl_engine_t = try dnnlCreate("creating the CPU engine", returning: "engine") {
      dnnl_engine_create(&$0, dnnl_cpu, 0)
    }
    let stream: dnnl_stream_t = try dnnlCreate(
      "creating the CPU stream", returning: "stream", onFailure: { dnnl_engine_destroy(engine) }
    ) { dnnl_stream_create(&$0, engine, UInt32(dnnl_stream_default_flags.rawValue)) }
    self.engine = engine
    self.stream = stream
    self.strict = strict
    if let threads, threads < 1 {
      throw DNNLError(operation: "configuring threads", reason: "thread count \(threads) < 1")
    }
    self.threads = threads
    usesUserScratchpad = userScratchpad
    scratchpad = userScratchpad ? DNNLScratchpad() : nil
    applyThreadCount()
  }

  deinit {
    dnnl_stream_destroy(stream)
    dnnl_engine_destroy(engine)
  }

  /// OpenMP keeps the thread count per calling thread, so engines call this at the start of
  /// every run; it costs one indirect call.
  /// Without an explicit count the process default is set, not kept: the calling thread may
  /// carry another engine's count (OpenMP keeps one per thread).
  func applyThreadCount() {
    guard let count = threads ?? OpenMPRuntime.defaultThreadCount else { return }
    OpenMPRuntime.setThreadCount?(Int32(count))
  }

  /// The thread whose OpenMP team last got the flush-to-zero mode (see `DNNLDenormals`).
  private var preparedThread: pthread_t?

  /// Called at the start of a run, after `applyThreadCount`: sets flush-to-zero /
  /// denormals-are-zero on the calling thread and, once per calling thread, on its OpenMP team.
  /// Returns what `leaveKernelMode` restores on the calling thread.
  func enterKernelMode() -> UInt32? {
    let saved = DNNLDenormals.enter()
    let current = pthread_self()
    if DNNLDenormals.flushes, preparedThread.map({ pthread_equal($0, current) == 0 }) ?? true {
      DNNLDenormals.prepareTeam()
      preparedThread = current
    }
    return saved
  }

  /// Restores the calling thread's floating-point mode saved by `enterKernelMode`.
  func leaveKernelMode(_ saved: UInt32?) {
    DNNLDenormals.leave(saved)
  }

  /// Blocks until all work submitted to the stream has finished.
  func wait() throws {
    try dnnlCheck(dnnl_stream_wait(stream), "waiting for the stream")
  }

  /// Library version, threading runtime, the instruction set the JIT kernels use and the
  /// OpenMP threads an engine built with `threads` runs on (the count it applies at every run,
  /// not the calling thread's current setting, which other engines may have changed).
  static func versionInfo(threads: Int?) -> [String: String] {
    var info: [String: String] = [:]
    if let version = dnnl_version()?.pointee {
      info["onednn"] = "\(version.major).\(version.minor).\(version.patch)"
      let runtime: String
      switch version.cpu_runtime {
      case 2: runtime = "omp"
      case 4: runtime = "tbb"
      case 1: runtime = "seq"
      case 8: runtime = "threadpool"
      default: runtime = "runtime \(version.cpu_runtime)"
      }
      info["onednn.cpu_runtime"] = runtime
    }
    info["onednn.isa"] = isaName(dnnl_get_effective_cpu_isa())
    if let count = threads ?? OpenMPRuntime.defaultThreadCount {
      info["onednn.max_threads"] = "\(count)"
    }
    return info
  }

  private static func isaName(_ isa: dnnl_cpu_isa_t) -> String {
    switch isa {
    case dnnl_cpu_isa_sse41: return "sse41"
    case dnnl_cpu_isa_avx: return "avx"
    case dnnl_cpu_isa_avx2: return "avx2"
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
    case dnnl_cpu_isa_avx512_core: return "avx512_core"
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
    default: return "isa 0x\(String(isa.rawValue, radix: 16))"
    }
  }
}

/// One scratchpad buffer shared by the primitives of one engine (which run one at a time),
/// grown as primitives needing more are bound; every memory bound to it is rebound on growth.
final class DNNLScratchpad {
  private var buffer: UnsafeMutableRawPointer?
  private var capacity = 0
  private var memories: [WeakMemory] = []

  private struct WeakMemory { weak var memory: DNNLMemory? }

  deinit { buffer?.deallocate() }

  /// A memory for `descriptor` over the shared buffer.
  func memory(for descriptor: DNNLMemoryDescriptor, engine: DNNLEngine) throws -> DNNLMemory {
    let bytes = descriptor.byteCount
    if bytes > capacity {
      let grown = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
      memories.removeAll { $0.memory == nil }
      for entry in memories { try entry.memory?.setBuffer(grown) }
      buffer?.deallocate()
      buffer = grown
      capacity = bytes
    }
    let memory = try DNNLMemory(descriptor, engine: engine, buffer: buffer)
    memories.append(WeakMemory(memory: memory))
    return memory
  }

  /// Bytes currently allocated.
  var byteCount: Int { capacity }
}
