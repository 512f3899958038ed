import CFloatKernels
import Foundation

/// GELU in its exact (erf) form over a dense float buffer, split across the OpenMP team.
///
/// The float engine runs it after a convolution or inner product instead of oneDNN's
/// `gelu_erf` post-op, and for a standalone Gelu node instead of an eltwise primitive, when the
/// CPU has AVX-512: the post-op costs about 37 cycles per 16 floats, this kernel about 16 (see
/// `Gelu.c`), which more than pays for a second pass over a buffer still in cache (FasterNet-T0's
/// 1x1 convolutions with GELU took 12–30 % less time this way, measured with oneDNN 2.6 on
/// 2 threads). Both approximate erf to within a few float ulps; results agree with
/// onnxruntime's to the engine's usual tolerance.
///
/// `IMAGENET_EVAL_GELU_POSTOP=1` keeps oneDNN's post-op and eltwise, for A/B measurements.
final class GeluKernel: FloatKernel {
  let implementation = "c:gelu-avx512"
  private let source: UnsafePointer<Float>
  private let destination: UnsafeMutablePointer<Float>
  private let count: Int

  /// Whether the engine lowers exact GELU to this kernel on this machine.
  static let isEnabled: Bool = {
    if ProcessInfo.processInfo.environment["IMAGENET_EVAL_GELU_POSTOP"] == "1" { return false }
    return ie_float_has_avx512f() != 0
  }()

  /// What computes exact GELU, for `FloatEngine.versionInfo["gelu"]`.
  static var provenance: String { isEnabled ? "avx512 kernel" : "oneDNN gelu_erf" }

  /// `destination` may equal `source` (in place).
  init(source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, count: Int) {
    self.source = source
    self.destination = destination
    self.count = count
  }

  func run() throws {
    let blocks = (count + 15) / 16
    KernelTeam.forEachRange(blocks, threads: KernelTeam.threads(forBytes: count * 4)) { range in
      let start = range.lowerBound * 16
      let end = min(count, range.upperBound * 16)
      ie_float_gelu_avx512(source + start, destination + start, end - start)
    }
  }
}
