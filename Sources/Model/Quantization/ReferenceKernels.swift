import Foundation

/// The geometry of a 2-D convolution on NHWC activations with OHWI weights
/// (`[outputChannels, kernelHeight, kernelWidth, inputChannels / groups]`).
public struct Conv2DGeometry: Equatable, Sendable {
  /// Images in the batch.
  public var batch: Int
  /// Input height.
  public var inputHeight: Int
  /// Input width.
  public var inputWidth: Int
  /// Input channels (all groups).
  public var inputChannels: Int
  /// Output channels (all groups).
  public var outputChannels: Int
  /// Kernel height.
  public var kernelHeight: Int
  /// Kernel width.
  public var kernelWidth: Int
  /// Vertical and horizontal stride.
  public var strides: (height: Int, width: Int)
  /// Zero padding (in real value 0, i.e. the input zero point) at the top, left, bottom, right.
  public var pads: (top: Int, left: Int, bottom: Int, right: Int)
  /// Vertical and horizontal dilation.
  public var dilations: (height: Int, width: Int)
  /// Channel groups; `groups == inputChannels == outputChannels` is depthwise.
  public var groups: Int

  /// Creates a geometry; `validate()` checks it.
  public init(
    batch: Int, inputHeight: Int, inputWidth: Int, inputChannels: Int, outputChannels: Int,
    kernelHeight: Int, kernelWidth: Int, strides: (height: Int, width: Int) = (1, 1),
    pads: (top: Int, left: Int, bottom: Int, right: Int) = (0, 0, 0, 0),
    dilations: (height: Int, width: Int) = (1, 1), groups: Int = 1
  ) {
    self.batch = batch
    self.inputHeight = inputHeight
    self.inputWidth = inputWidth
    self.inputChannels = inputChannels
    self.outputChannels = outputChannels
    self.kernelHeight = kernelHeight
    self.kernelWidth = kernelWidth
    self.strides = strides
    self.pads = pads
    self.dilations = dilations
    self.groups = groups
  }

  /// Output height: `(H + pt + pb - d·(k-1) - 1) / s + 1`.
  public var outputHeight: Int {
    (inputHeight + pads.top + pads.bottom - dilations.height * (kernelHeight - 1) - 1)
      / strides.height + 1
  }

  /// Output width: `(W + pl + pr - d·(k-1) - 1) / s + 1`.
  public var outputWidth: Int {
    (inputWidth + pads.left + pads.right - dilations.width * (kernelWidth - 1) - 1)
      / strides.width + 1
  }

  /// Throws unless every dimension is positive and the channels split into the groups.
  public func validate() throws {
    let positive = [
      batch, inputHeight, inputWidth, inputChannels, outputChannels, kernelHeight, kernelWidth,
      strides.height, strides.width, dilations.height, dilations.width, groups,
    ]
    guard positive.allSatisfy({ $0 > 0 }),
      [pads.top, pads.left, pads.bottom, pads.right]
        .allSatisfy({ $0 >= 0 })
    else {
      throw QuantizationError.shapeMismatch("conv2d: non-positive dimension in \(self)")
    }
    guard inputChannels % groups == 0, outputChannels % groups == 0 else {
      throw QuantizationError.shapeMismatch(
        "conv2d: \(inputChannels) input / \(outputChannels) output channels do not split into"
          + " \(groups) groups")
    }
    guard outputHeight > 0, outputWidth > 0 else {
      throw QuantizationError.shapeMismatch("conv2d: empty output for \(self)")
    }
  }

  /// Field-wise equality (tuples keep the synthesised conformance from applying).
  public static func == (a: Conv2DGeometry, b: Conv2DGeometry) -> Bool {
    a.batch == b.batch && a.inputHeight == b.inputHeight && a.inputWidth == b.inputWidth
      && a.inputChannels == b.inputChannels && a.outputChannels == b.outputChannels
      && a.kernelHeight == b.kernelHeight && a.kernelWidth == b.kernelWidth
      && a.strides == b.strides && a.pads == b.pads && a.dilations == b.dilations
      && a.groups == b.groups
  }
}

/// Plain scalar int8 kernels: the oracle the oneDNN int8 kernels must match bit for bit.
/// They favour obvious correctness over speed; accumulation is exact in int32 (checked: an
/// overflow throws rather than wraps).
public enum ReferenceKernels {
  /// 2-D convolution, NHWC codes in and out, OHWI int8 weights (zero point 0), int32 bias in
  /// accumulator units, requantised per output channel (see `Requantization`), with the
  /// optional residual (same shape as the output, NHWC) summed before the fused clamp.
  public static func conv2d<In: FixedWidthInteger, Out: FixedWidthInteger>(
    input: UnsafeBufferPointer<In>, inputZeroPoint: Int32, weights: UnsafeBufferPointer<Int8>,
    bias: UnsafeBufferPointer<Int32>?, geometry g: Conv2DGeometry,
    requantization r: Requantization, residual: UnsafeBufferPointer<Out>? = nil,
    output: UnsafeMutableBufferPointer<Out>
  ) throws {
    try g.validate()
    let cinPerGroup = g.inputChannels / g.groups
    let coutPerGroup = g.outputChannels / g.groups
    let oh = g.outputHeight
    let ow = g.outputWidth
    try check(input.count, g.batch * g.inputHeight * g.inputWidth * g.inputChannels, "conv2d input")
    try check(
      weights.count, g.outputChannels * g.kernelHeight * g.kernelWidth * cinPerGroup,
      "conv2d weights")
    if let bias { try check(bias.count, g.outputChannels, "conv2d bias") }
    try check(output.count, g.batch * oh * ow * g.outputChannels, "conv2d output")
    if let residual { try check(residual.count, output.count, "conv2d residual") }
    try checkRequantization(r, channels: g.outputChannels, output: Out.self, kernel: "conv2d")
    try checkResidual(r, present: residual != nil, kernel: "conv2d")

    let zp = Int64(inputZeroPoint)
    for n in 0..<g.batch {
      for y in 0..<oh {
        for x in 0..<ow {
          for oc in 0..<g.outputChannels {
            let group = oc / coutPerGroup
            var acc: Int64 = 0
            for ky in 0..<g.kernelHeight {
              let iy = y * g.strides.height - g.pads.top + ky * g.dilations.height
              if iy < 0 || iy >= g.inputHeight { continue }
              for kx in 0..<g.kernelWidth {
                let ix = x * g.strides.width - g.pads.left + kx * g.dilations.width
                if ix < 0 || ix >= g.inputWidth { continue }
                let inBase =
                  ((n * g.inputHeight + iy) * g.inputWidth + ix) * g.inputChannels + group
                  * cinPerGroup
                let wBase = ((oc * g.kernelHeight + ky) * g.kernelWidth + kx) * cinPerGroup
                for ic in 0..<cinPerGroup {
                  acc += (Int64(input[inBase + ic]) - zp) * Int64(weights[wBase + ic])
                }
              }
            }
            let o = ((n * oh + y) * ow + x) * g.outputChannels + oc
            output[o] = try finish(
              acc, bias: bias?[oc] ?? 0, channel: oc, residual: residual.map { Int32($0[o]) } ?? 0,
              r, kernel: "conv2d", at: o)
          }
        }
      }
    }
  }

  /// Matrix product `A · Bᵀ`: `a` is `[m, k]` activation codes, `b` is `[n, k]` int8 weights
  /// (ONNX Gemm with transB = 1, i.e. a fully connected layer), `bias` is `[n]` in accumulator
  /// units; the output `[m, n]` is requantised per column.
  public static func gemm<In: FixedWidthInteger, Out: FixedWidthInteger>(
    a: UnsafeBufferPointer<In>, aZeroPoint: Int32, b: UnsafeBufferPointer<Int8>,
    bias: UnsafeBufferPointer<Int32>?, m: Int, n: Int, k: Int, requantization r: Requantization,
    output: UnsafeMutableBufferPointer<Out>
  ) throws {
    guard m > 0, n > 0, k > 0 else {
      throw QuantizationError.shapeMismatch("gemm: m=\(m) n=\(n) k=\(k)")
    }
    try check(a.count, m * k, "gemm A")
    try check(b.count, n * k, "gemm B")
    if let bias { try check(bias.count, n, "gemm bias") }
    try check(output.count, m * n, "gemm output")
    try checkRequantization(r, channels: n, output: Out.self, kernel: "gemm")
    try checkResidual(r, present: false, kernel: "gemm")
    let zp = Int64(aZeroPoint)
    for i in 0..<m {
      for j in 0..<n {
        var acc: Int64 = 0
        for p in 0..<k {
          acc += (Int64(a[i * k + p]) - zp) * Int64(b[j * k + p])
        }
        output[i * n + j] = try finish(
          acc, bias: bias?[j] ?? 0, channel: j, residual: 0, r, kernel: "gemm", at: i * n + j)
      }
    }
  }

  /// Elementwise `a + b` of two quantised tensors of equal shape:
  ///
  /// ```
  /// y = Float(q_a - zp_a) * (s_a / s_out) + Float(q_b - zp_b) * (s_b / s_out)
  /// y = min(max(y, lower / s_out), upper / s_out)        // optional fused clamp
  /// q = round_half_even(saturate(y + Float(zp_out)))
  /// ```
  ///
  /// in float32, each operation rounded separately, the two ratios computed once.
  public static func add<A: FixedWidthInteger, B: FixedWidthInteger, Out: FixedWidthInteger>(
    _ a: UnsafeBufferPointer<A>, _ aParams: QuantParams, _ b: UnsafeBufferPointer<B>,
    _ bParams: QuantParams, output: UnsafeMutableBufferPointer<Out>, outputParams: QuantParams,
    activation: FusedActivation = .none
  ) throws {
    try check(b.count, a.count, "add second input")
    try check(output.count, a.count, "add output")
    for (role, p, type) in [
      ("first input", aParams, QuantizedType.of(A.self)),
      ("second input", bParams, QuantizedType.of(B.self)),
      ("output", outputParams, QuantizedType.of(Out.self)),
    ] {
      guard p.isPerTensor, p.type == type else {
        throw QuantizationError.invalidParameter(
          "add: \(role) parameters (\(p.type.rawValue), \(p.scales.count) scales) do not match"
            + " its per-tensor buffer type")
      }
    }
    let sOut = outputParams.scale
    let ma = aParams.scale / sOut
    let mb = bParams.scale / sOut
    let bounds = activation.realBounds
    let lower = bounds.lower / sOut
    let upper = bounds.upper / sOut
    let zpA = aParams.zeroPoint
    let zpB = bParams.zeroPoint
    let zpOut = Float(outputParams.zeroPoint)
    for i in 0..<a.count {
      var y = Float(Int32(a[i]) - zpA) * ma + Float(Int32(b[i]) - zpB) * mb
      y = Swift.min(Swift.max(y, lower), upper)
      output[i] = Out(truncatingIfNeeded: Requantization.store(y + zpOut, type: outputParams.type))
    }
  }

  /// Global average pooling, NHWC `[n, h, w, c]` to `[n, c]`:
  ///
  /// ```
  /// acc = Σ_hw (q - zp_in)                 // exact integer sum
  /// m   = s_in / (Float(h·w) * s_out)      // float32, once
  /// q   = round_half_even(saturate(Float(acc) * m + Float(zp_out)))
  /// ```
  public static func globalAveragePool<In: FixedWidthInteger, Out: FixedWidthInteger>(
    input: UnsafeBufferPointer<In>, inputParams: QuantParams, batch: Int, height: Int,
    width: Int, channels: Int, output: UnsafeMutableBufferPointer<Out>,
    outputParams: QuantParams
  ) throws {
    guard batch > 0, height > 0, width > 0, channels > 0 else {
      throw QuantizationError.shapeMismatch(
        "global average pool: shape [\(batch), \(height), \(width), \(channels)]")
    }
    try check(input.count, batch * height * width * channels, "global average pool input")
    try check(output.count, batch * channels, "global average pool output")
    guard inputParams.isPerTensor, inputParams.type == QuantizedType.of(In.self),
      outputParams.isPerTensor, outputParams.type == QuantizedType.of(Out.self)
    else {
      throw QuantizationError.invalidParameter(
        "global average pool: parameters must be per tensor and match the buffer types")
    }
    let multiplier = inputParams.scale / (Float(height * width) * outputParams.scale)
    let zpIn = Int64(inputParams.zeroPoint)
    let zpOut = Float(outputParams.zeroPoint)
    for n in 0..<batch {
      for c in 0..<channels {
        var acc: Int64 = 0
        for p in 0..<(height * width) {
          acc += Int64(input[(n * height * width + p) * channels + c]) - zpIn
        }
        let y = Float(acc) * multiplier + zpOut
        output[n * channels + c] = Out(
          truncatingIfNeeded: Requantization.store(y, type: outputParams.type))
      }
    }
  }

  private static func check(_ actual: Int, _ expected: Int, _ what: String) throws {
    guard actual == expected else {
      throw QuantizationError.shapeMismatch("\(what) has \(actual) elements, expected \(expected)")
    }
  }

  private static func checkRequantization<Out>(
    _ r: Requantization, channels: Int, output: Out.Type, kernel: String
  ) throws {
    guard r.multipliers.count == 1 || r.multipliers.count == channels else {
      throw QuantizationError.shapeMismatch(
        "\(kernel): \(r.multipliers.count) multipliers for \(channels) output channels")
    }
    guard let type = (Out.self as? any FixedWidthInteger.Type).flatMap({ of($0) }),
      type == r.outputType
    else {
      throw QuantizationError.invalidParameter(
        "\(kernel): output buffer \(Out.self) does not hold \(r.outputType.rawValue)")
    }
  }

  private static func of<T: FixedWidthInteger>(_ t: T.Type) -> QuantizedType? {
    QuantizedType.of(t)
  }

  private static func checkResidual(_ r: Requantization, present: Bool, kernel: String) throws {
    guard (r.residualScale != nil) == present else {
      throw QuantizationError.invalidParameter(
        "\(kernel): requantisation \(r.residualScale == nil ? "has no" : "expects a")"
          + " residual but the call \(present ? "passes one" : "passes none")")
    }
  }

  @inline(__always)
  private static func finish<Out: FixedWidthInteger>(
    _ acc: Int64, bias: Int32, channel: Int, residual: Int32, _ r: Requantization,
    kernel: String, at index: Int
  ) throws -> Out {
    guard let acc32 = Int32(exactly: acc) else {
      throw QuantizationError.invalidParameter(
        "\(kernel): int32 accumulator overflows (\(acc)) at output element \(index)")
    }
    return Out(
      truncatingIfNeeded: r.requantize(acc32, bias: bias, channel: channel, residual: residual))
  }
}
