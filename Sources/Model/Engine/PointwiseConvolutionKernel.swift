import CFloatKernels
import Foundation

/// A 1×1 convolution computed by `PointwiseConvolution.c` instead of oneDNN: on a team of
/// threads every one the kernel accepts, on one thread those whose weights outweigh their pixels
/// (FasterNet's stage-4 convolutions at batch 1, the head's 1×1 convolution after global
/// pooling).
///
/// On this project's CPU (Xeon, AVX-512; bench/README.md "Session 11") a chain of 1×1
/// convolutions on two threads loses 10–15 % when each thread's inputs were written by the
/// other core: split by output channels, every pixel's channels end up half in each core's
/// L2, and the next convolution needs all of them (chains of oneDNN's convolutions measure
/// like that). Split by pixels, each thread reads what it wrote (`Split.pixels`). With a few
/// pixels and megabytes of weights (stage 4 at batch 1), the weights are what each thread must
/// not read twice: split by output blocks, whose next weights the kernel prefetches into L2
/// while it multiplies the current ones (oneDNN took 1.03–1.21× the kernel's time at 49
/// pixels, 3.65× at 8, `bench/engine/conv1x1.sh`). On one thread there is no other core:
/// oneDNN keeps the convolutions with fewer than 10 KB of weights per pixel, where it is as
/// fast or faster (0.96–1.05× the kernel).
///
/// The fused post-ops it takes are those FasterNet and EfficientNet put after such a
/// convolution: a residual sum, then ReLU / Clip (GELU runs after it as `GeluKernel`). Used
/// only on AVX-512 CPUs; `IMAGENET_EVAL_CONV1X1_ONEDNN=1` keeps oneDNN's convolution, for A/B
/// measurements.
final class PointwiseConvolutionKernel: FloatKernel {
  static let implementationName = "c:conv1x1-avx512"
  let implementation = implementationName

  /// Whether the engine lowers eligible 1×1 convolutions to this kernel on this machine.
  static let isEnabled: Bool = {
    if ProcessInfo.processInfo.environment["IMAGENET_EVAL_CONV1X1_ONEDNN"] == "1" { return false }
    return ie_float_has_avx512f() != 0
  }()

  /// What the kernel does after the sum over input channels: add the destination's previous
  /// value (`accumulate`), then bound to `lower...upper`.
  struct Epilogue: Equatable {
    var accumulate = false
    var lower = -Float.infinity
    var upper = Float.infinity

    /// The epilogue of a fused post-op chain — an optional residual sum, then an optional
    /// ReLU or Clip — or nil for any other chain.
    init?(_ chain: [PostOp]) {
      var rest = chain[...]
      if rest.first == .sum {
        accumulate = true
        rest = rest.dropFirst()
      }
      switch rest.first {
      case nil: break
      case .activation(.relu): lower = 0
      case .activation(.clip(let low, let high)) where low <= high:
        (lower, upper) = (low, high)
      default: return nil
      }
      guard rest.count <= 1 else { return nil }
    }
  }

  /// Whether `convolution` is one the kernel computes: 1×1, stride 1, no padding, no
  /// dilation, one group, a multiple of 16 outputs.
  static func accepts(_ convolution: Convolution, weightShape: [Int]) -> Bool {
    convolution.kernelShape == [1, 1] && convolution.strides == [1, 1]
      && convolution.pads == [0, 0, 0, 0] && convolution.dilations == [1, 1]
      && convolution.group == 1 && weightShape.count == 4 && weightShape[2...] == [1, 1]
      && weightShape[0] % 16 == 0 && weightShape[0] > 0 && weightShape[1] > 0
  }

  /// How a team shares one convolution.
  enum Split: Equatable {
    /// Each thread a range of whole tiles of pixels, every output channel.
    case pixels
    /// Each thread a range of 16-channel output blocks, every pixel.
    case outputBlocks
  }

  /// How the engine computes an accepted convolution over `pixels` pixels on a team of
  /// `threads`: by the kernel, split as returned, or nil for oneDNN's convolution. Pixels when
  /// every thread gets at least four tiles, otherwise output blocks; on one thread only with at
  /// least 10 KB of weights per pixel.
  static func split(pixels: Int, inputs: Int, outputs: Int, threads: Int) -> Split? {
    guard threads > 1 else {
      return inputs * outputs * 4 >= 10 * 1024 * pixels ? .outputBlocks : nil
    }
    return tiles(pixels) >= 4 * threads ? .pixels : .outputBlocks
  }

  private static let tilePixels = Int(ie_float_conv1x1_tile_pixels)

  /// The kernel's tiles over `pixels` pixels, the last one possibly short.
  private static func tiles(_ pixels: Int) -> Int { (pixels + tilePixels - 1) / tilePixels }

  private let source: UnsafePointer<Float>
  private let destination: UnsafeMutablePointer<Float>
  private let packedWeights: UnsafeMutablePointer<Float>
  private let bias: UnsafeMutablePointer<Float>?
  private let pixels: Int
  private let inputs: Int
  private let outputs: Int
  private let epilogue: Epilogue
  private let split: Split

  /// `source` and `destination` are channels-last, `pixels` × `inputs` and `pixels` ×
  /// `outputs` floats; `weights` in ONNX order [outputs][inputs]; `bias` has `outputs` values.
  init(
    source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, weights: [Float],
    bias: [Float]?, pixels: Int, inputs: Int, outputs: Int, epilogue: Epilogue, split: Split
  ) {
    // Guaranteed for graph constants: the loader checks every tensor's data against its
    // shape, shape inference a Conv's bias shape, and `accepts` the weight shape.
    precondition(weights.count == inputs * outputs && outputs % 16 == 0)
    precondition(bias == nil || bias?.count == outputs)
    self.source = source
    self.destination = destination
    (self.pixels, self.inputs, self.outputs) = (pixels, inputs, outputs)
    (self.epilogue, self.split) = (epilogue, split)
    let count = ie_float_conv1x1_packed_count(Int32(inputs), Int32(outputs))
    let packed = UnsafeMutableRawPointer.allocate(
      byteCount: count * MemoryLayout<Float>.size, alignment: 64
    ).bindMemory(to: Float.self, capacity: count)
    weights.withUnsafeBufferPointer {
      ie_float_conv1x1_pack($0.baseAddress, Int32(inputs), Int32(outputs), packed)
    }
    packedWeights = packed
    self.bias = .ownedCopy(of: bias)
  }

  deinit {
    packedWeights.deallocate()
    bias?.deallocate()
  }

  func run() throws {
    // The team size is read at run time: the engine sets its thread count before each run.
    switch split {
    case .pixels:
      let tiles = Self.tiles(pixels)
      KernelTeam.forEachRange(tiles, threads: min(KernelTeam.availableThreads, tiles)) { range in
        let first = range.lowerBound * Self.tilePixels
        let end = min(range.upperBound * Self.tilePixels, pixels)
        compute(pixels: first..<end, blocks: 0..<outputs / 16)
      }
    case .outputBlocks:
      let blocks = outputs / 16
      KernelTeam.forEachRange(blocks, threads: min(KernelTeam.availableThreads, blocks)) {
        compute(pixels: 0..<pixels, blocks: $0)
      }
    }
  }

  private func compute(pixels: Range<Int>, blocks: Range<Int>) {
    ie_float_conv1x1_avx512(
      source + pixels.lowerBound * inputs, pixels.count, Int32(inputs), packedWeights, bias,
      Int32(outputs), Int32(blocks.lowerBound), Int32(blocks.upperBound), epilogue.lower,
      epilogue.upper, epilogue.accumulate ? 1 : 0, destination + pixels.lowerBound * outputs)
  }
}
