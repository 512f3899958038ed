#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Flush-to-zero and denormals-are-zero (the SSE control register's FTZ and DAZ bits) on the
/// threads that run oneDNN kernels.
///
/// oneDNN 2.6 leaves the control register as it finds it, and its GELU (erf) post-op builds
/// `2^(n-1)` for `exp(-x²)` by integer arithmetic: for |x| above about 13 that is a subnormal,
/// and every multiply with it costs a microcode assist. Measured on a 1×1 conv 160→320 + GELU
/// at batch 16, 14×14, inputs scaled ×16, one thread: 4.42 ms with subnormals, 3.86 ms
/// flushed (three interleaved pairs, load average 12). Activations that stay small never hit
/// it, so the gain on the benchmark models (normalised random weights) is within noise.
/// Flushing changes results only where a value is below 1.2e-38 in magnitude, far inside every
/// tolerance against onnxruntime.
///
/// `IMAGENET_EVAL_KEEP_DENORMALS=1` keeps IEEE subnormals (for A/B measurements).
enum DNNLDenormals {
  /// MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero).
  static let flushBits: UInt32 = 0x8040

  /// False when the environment asks to keep subnormals.
  static let flushes: Bool = {
    guard let value = getenv("IMAGENET_EVAL_KEEP_DENORMALS") else { return true }
    return String(cString: value) != "1"
  }()

  #if arch(x86_64) && canImport(Glibc)
    /// The calling thread's SSE control register.
    static func controlRegister() -> UInt32 {
      var environment = fenv_t()
      fegetenv(&environment)
      return environment.__mxcsr
    }

    static func setControlRegister(_ value: UInt32) {
      var environment = fenv_t()
      fegetenv(&environment)
      environment.__mxcsr = value
      fesetenv(&environment)
    }

    /// Sets FTZ/DAZ on the calling thread; returns the register to restore, nil when it was
    /// already set (or flushing is off).
    static func enter() -> UInt32? {
      guard flushes else { return nil }
      let saved = controlRegister()
      guard saved & flushBits != flushBits else { return nil }
      setControlRegister(saved | flushBits)
      return saved
    }

    static func leave(_ saved: UInt32?) {
      if let saved { setControlRegister(saved) }
    }

    /// Sets FTZ/DAZ on every thread of the calling thread's OpenMP team. libgomp keeps a
    /// thread pool per calling thread and reuses it for every parallel region (oneDNN's too);
    /// threads it creates later copy the creating thread's register, which `enter` has set.
    static func prepareTeam() {
      guard flushes, let parallel = OpenMPParallel.function else { return }
      parallel(
        { _ in
          var environment = fenv_t()
          fegetenv(&environment)
          environment.__mxcsr |= 0x8040
          fesetenv(&environment)
        }, nil, 0, 0)
    }
  #else
    static func enter() -> UInt32? { nil }
    static func leave(_ saved: UInt32?) {}
    static func prepareTeam() {}
  #endif
}

/// libgomp's `GOMP_parallel(fn, data, num_threads, flags)`, the entry point a
/// `#pragma omp parallel` compiles to, looked up in the runtime oneDNN already loaded.
private enum OpenMPParallel {
  typealias Body = @convention(c) (UnsafeMutableRawPointer?) -> Void
  typealias Parallel = @convention(c) (Body, UnsafeMutableRawPointer?, UInt32, UInt32) -> Void

  static let function: Parallel? = {
    guard let program = dlopen(nil, RTLD_NOW), let address = dlsym(program, "GOMP_parallel")
    else { return nil }
    return unsafeBitCast(address, to: Parallel.self)
  }()
}
