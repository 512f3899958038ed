import CFloatKernels
import Foundation

/// A 1×1 convolution whose weights outweigh its pixels — FasterNet's stage-4 convolutions at
/// batch 1 (49 pixels, 0.8–8 MB of weights), the head's 1×1 convolution after global pooling —
/// computed by `PointwiseConvolution.c` instead of oneDNN.
///
/// oneDNN's kernel reads such weights from L3 as it goes and waits on them; this one prefetches
/// the next weights into L2 while it multiplies the current ones. Measured on this project's
/// CPU (Xeon, AVX-512, weights cold as in a model; `bench/engine/conv1x1.sh`, bench/README.md
/// "Session 10"), oneDNN took 1.03–1.21× the kernel's time at 49 pixels on two threads,
/// 1.08–1.10× at 392 pixels and 3.65× at 8 (768→1280) on one, but 0.98–1.05× at 196 pixels
/// and less at thousands. Hence `prefers`: weights of at least 10 KB per pixel.
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

  /// Whether the kernel is expected to beat oneDNN: at least 10 KB of weights per pixel.
  static func prefers(pixels: Int, inputs: Int, outputs: Int) -> Bool {
    inputs * outputs * 4 >= 10 * 1024 * pixels
  }

  private let source: UnsafePointer<Float>
  private let destination: UnsafeMutablePointer<Float>
  private let packedWeights: UnsafeMutablePointer<Float>
  private let bias: UnsafeMutablePointer<Float>?
  private let pixels: Int
  private let inputs: Int
  private let outputs: Int
  private let epilogue: Epilogue

  /// `source` and `destination` are channels-last, `pixels` × `inputs` and `pixels` ×
  /// `outputs` floats; `weights` in ONNX order [outputs][inputs]; `bias` has `outputs` values.
  init(
    source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, weights: [Float],
    bias: [Float]?, pixels: Int, inputs: Int, outputs: Int, epilogue: Epilogue
  ) {
    // Guaranteed for graph constants: the loader checks every tensor's data against its
    // shape, shape inference a Conv's bias shape, and `accepts` the weight shape.
    precondition(weights.count == inputs * outputs && outputs % 16 == 0)
    precondition(bias == nil || bias?.count == outputs)
    self.source = source
    self.destination = destination
    (self.pixels, self.inputs, self.outputs, self.epilogue) = (pixels, inputs, outputs, epilogue)
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
    let blocks = outputs / 16
    // The team size is read at run time: the engine sets its thread count before each run.
    KernelTeam.forEachRange(blocks, threads: min(KernelTeam.availableThreads, blocks)) {
      range in
      ie_float_conv1x1_avx512(
        source, pixels, Int32(inputs), packedWeights, bias, Int32(outputs),
        Int32(range.lowerBound), Int32(range.upperBound), epilogue.lower, epilogue.upper,
        epilogue.accumulate ? 1 : 0, destination)
    }
  }
}
