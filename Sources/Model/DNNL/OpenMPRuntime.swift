import Foundation

/// The OpenMP entry points, looked up at run time in the already-loaded runtime that oneDNN
/// links (libgomp on Debian), so the package needs no extra link flag or header. Each is nil
/// without such a runtime; callers then run on the calling thread.
enum OpenMPRuntime {
  typealias Body = @convention(c) (UnsafeMutableRawPointer?) -> Void
  typealias ParallelEntry = @convention(c) (Body, UnsafeMutableRawPointer?, UInt32, UInt32) -> Void
  typealias Query = @convention(c) () -> Int32
  typealias SetThreads = @convention(c) (Int32) -> Void
  typealias Barrier = @convention(c) () -> Void

  /// libgomp's `#pragma omp parallel`: runs `body(data)` on a team of `threads` (0: the
  /// default) including the caller.
  static let parallel: ParallelEntry? = symbol("GOMP_parallel")
  static let threadNumber: Query? = symbol("omp_get_thread_num")
  static let teamSize: Query? = symbol("omp_get_num_threads")
  static let maxThreads: Query? = symbol("omp_get_max_threads")
  static let inParallel: Query? = symbol("omp_in_parallel")
  static let setThreadCount: SetThreads? = symbol("omp_set_num_threads")
  /// libgomp's `#pragma omp barrier`: waits, inside a region, for the whole team.
  static let barrier: Barrier? = symbol("GOMP_barrier")
  private static let processorCount: Query? = symbol("omp_get_num_procs")

  /// The thread count "default" stands for: the first value of `OMP_NUM_THREADS` when it is
  /// set, else one per processor — what libgomp starts every thread with. It does not follow
  /// later `omp_set_num_threads` calls, which stay with the thread that made them (e.g. an
  /// engine built with one thread): an engine built with the default must not inherit them.
  static let defaultThreadCount: Int? = {
    if let value = getenv("OMP_NUM_THREADS"),
      let first = String(cString: value).split(separator: ",").first,
      let count = Int(first.trimmingCharacters(in: .whitespaces)), count >= 1
    {
      return count
    }
    return processorCount.map { max(1, Int($0())) }
  }()

  private static func symbol<T>(_ name: String) -> T? {
    // A null handle from dlopen(nil) searches the program and every library it loaded.
    guard let program = dlopen(nil, RTLD_NOW), let address = dlsym(program, name) else {
      return nil
    }
    return unsafeBitCast(address, to: T.self)
  }
}
