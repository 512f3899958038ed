import CFloatKernels
import Foundation

/// FasterNet's partial convolution — a 3×3 convolution (stride 1, padding 1) over the first
/// `channels` channels of a channels-last tensor, the other channels passed through — in one
/// parallel region instead of oneDNN's four primitives (slice reorder, convolution, write-back,
/// restore; see `PartialConvolution.c`).
///
/// `run` copies the first channels of `source` into a zero-padded dense buffer, waits for the
/// team, then writes the convolution over the first channels of `destination`, which may be
/// `source`: every thread's copy is complete before any thread writes. The copy keeps the
/// original channels until the next run; `restoring` makes the step that writes them back, for
/// a residual sum that must read the untouched source.
///
/// Used only on AVX-512 CPUs, by plans that run on more than one thread, for channel counts
/// that are not multiples of 16 (those use oneDNN's Winograd convolution): its gain is the
/// forks and joins it saves, and on one thread oneDNN's convolution is faster for some channel
/// counts (10 of 16 lanes used at 10 channels). `IMAGENET_EVAL_PCONV_ONEDNN=1` keeps oneDNN's
/// primitives, for A/B measurements.
final class PartialConvolutionKernel: FloatKernel {
  let implementation = "c:conv3x3-avx512"

  /// A channels-last tensor and the channels the kernel convolves.
  struct Geometry {
    var images: Int
    var height: Int
    var width: Int
    /// Channels of the tensor.
    var totalChannels: Int
    /// The first `channels` channels are convolved.
    var channels: Int

    var rows: Int { images * height }
  }

  /// Whether the engine lowers partial convolutions to this kernel on this machine.
  static let isEnabled: Bool = {
    if ProcessInfo.processInfo.environment["IMAGENET_EVAL_PCONV_ONEDNN"] == "1" { return false }
    return ie_float_has_avx512f() != 0
  }()

  /// Whether `convolution` is one the kernel computes: 3×3, stride 1, padding 1 on every side,
  /// no dilation, one group, as many outputs as inputs, no fused post-op.
  static func accepts(_ convolution: Convolution, weightShape: [Int]) -> Bool {
    convolution.kernelShape == [3, 3] && convolution.strides == [1, 1]
      && convolution.pads == [1, 1, 1, 1] && convolution.dilations == [1, 1]
      && convolution.group == 1 && convolution.postOps.isEmpty && weightShape.count == 4
      && weightShape[0] == weightShape[1] && weightShape[2...] == [3, 3]
  }

  let geometry: Geometry
  private let source: UnsafePointer<Float>
  fileprivate let destination: UnsafeMutablePointer<Float>
  private let packedWeights: UnsafeMutablePointer<Float>
  private let bias: UnsafeMutablePointer<Float>?
  /// The zero-padded copy of the convolved channels; its border is never written.
  fileprivate let padded: UnsafeMutablePointer<Float>
  private let usefulThreads: Int

  /// `weights` in ONNX order [out][in][3][3]; `bias` has `channels` values.
  init(
    source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, weights: [Float],
    bias: [Float]?, geometry: Geometry
  ) {
    // Guaranteed for graph constants: the loader checks every tensor's data against its
    // shape, shape inference a Conv's bias shape, and `accepts` the weight shape.
    precondition(weights.count == geometry.channels * geometry.channels * 9)
    precondition(bias == nil || bias?.count == geometry.channels)
    self.source = source
    self.destination = destination
    self.geometry = geometry
    let channels = Int32(geometry.channels)
    let packed = UnsafeMutablePointer<Float>.allocate(
      capacity: ie_float_conv3x3_packed_count(channels))
    weights.withUnsafeBufferPointer { ie_float_conv3x3_pack($0.baseAddress, channels, packed) }
    packedWeights = packed
    self.bias = .ownedCopy(of: bias)
    let paddedCount = ie_float_conv3x3_padded_count(
      Int32(geometry.images), Int32(geometry.height), Int32(geometry.width), channels)
    padded = .allocate(capacity: paddedCount)
    padded.initialize(repeating: 0, count: paddedCount)
    // Below about 64k multiply-adds per thread a fork and join costs more than it saves.
    let multiplyAdds = geometry.rows * geometry.width * geometry.channels * geometry.channels * 9
    usefulThreads = max(1, multiplyAdds / 65_536)
  }

  deinit {
    packedWeights.deallocate()
    bias?.deallocate()
    padded.deallocate()
  }

  func run() throws {
    let g = geometry
    let (height, width) = (Int32(g.height), Int32(g.width))
    let (total, channels) = (Int32(g.totalChannels), Int32(g.channels))
    // The team size is read at run time: the engine sets its thread count before each run.
    KernelTeam.forEachRange(
      g.rows, threads: min(KernelTeam.availableThreads, usefulThreads),
      { rows in
        ie_float_conv3x3_gather_avx512(
          source, height, width, total, channels, rows.lowerBound, rows.upperBound, padded)
      },
      thenAfterBarrier: { rows in
        ie_float_conv3x3_rows_avx512(
          padded, packedWeights, bias, height, width, total, channels, rows.lowerBound,
          rows.upperBound, destination)
      })
  }

  /// A step that writes the original channels, kept since the last `run`, back into
  /// `destination`.
  func restoring() -> FloatKernel { PartialConvolutionRestore(self) }
}

/// Writes a partial convolution's original channels back over its output (see
/// `PartialConvolutionKernel`).
private final class PartialConvolutionRestore: FloatKernel {
  let implementation = "c:slice-restore-avx512"
  private let convolution: PartialConvolutionKernel

  init(_ convolution: PartialConvolutionKernel) { self.convolution = convolution }

  func run() throws {
    let (g, padded, destination) = (
      convolution.geometry, convolution.padded, convolution.destination
    )
    let threads = KernelTeam.threads(forBytes: g.rows * g.width * g.channels * 4)
    KernelTeam.forEachRange(g.rows, threads: threads) { rows in
      ie_float_conv3x3_scatter_avx512(
        padded, Int32(g.height), Int32(g.width), Int32(g.totalChannels), Int32(g.channels),
        rows.lowerBound, rows.upperBound, destination)
    }
  }
}
