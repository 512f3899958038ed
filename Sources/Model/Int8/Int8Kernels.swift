import CDNNL

// The int8 primitives of `Int8Engine`, built on oneDNN 2.x and checked bit for bit against
// `ReferenceKernels` (Tests/ModelTests/Int8KernelTests.swift).
//
// How the engine's requantisation (see `Requantization`) maps onto oneDNN 2.x attributes:
//   output scales (mask 1<<1, one per output channel) = `m[oc] = s_in * s_w[oc] / s_out`;
//   bias stays int32 in accumulator units (oneDNN converts `acc` and `bias` to float32, adds,
//   then multiplies by the scale: `(Float(acc) + Float(bias)) * m`);
//   residual: `sum` post-op with scale `s_res / s_out` reading the destination's old codes;
//   fused ReLU/ReLU6/Clip: an `eltwise clip` post-op with the bounds in output-scale units;
//   destination zero point: `zero_points(DST)`, added after the post-ops, then the store
//   saturates and rounds half to even. Source zero points use `zero_points(SRC)`.

/// The oneDNN data type holding codes of `type`.
func dnnlDataType(_ type: QuantizedType) throws -> DNNLDataType {
  switch type {
  case .int8: return .s8
  case .uint8: return .u8
  case .int32: return .s32
  case .int16:
    throw QuantizationError.invalidParameter("int16 activations are not supported by oneDNN 2.x")
  }
}

/// `bias[o] − zeroPoint · Σ weights of o` for `outputs` output channels whose weight codes are
/// consecutive (OHWI or `[n, k]`): a source zero point folded into the bias, exactly in int32,
/// Σ (q_x − zp)·w = Σ q_x·w − zp·Σ w.
func biasFolding(
  sourceZeroPoint zeroPoint: Int32, into bias: [Int32]?, weights: [Int8], outputs: Int
) -> [Int32] {
  let perOutput = weights.count / outputs
  return (0..<outputs).map { o in
    let sum = weights[(o * perOutput)..<((o + 1) * perOutput)].reduce(Int32(0)) {
      $0 &+ Int32($1)
    }
    return (bias?[o] ?? 0) &- zeroPoint &* sum
  }
}

/// The attributes realising `r` (plus an optional source zero point) on a oneDNN int8
/// convolution or inner product. With a float32 destination the same attributes give
/// `m·(acc + bias)` unrounded (build `r` with an output scale of 1 for real units).
func int8Attributes(_ r: Requantization, inputZeroPoint: Int32) throws -> DNNLAttributes {
  var attributes = DNNLAttributes()
  attributes.outputScales =
    r.multipliers.count == 1 ? (0, r.multipliers) : (1 << 1, r.multipliers)
  if let residualScale = r.residualScale {
    guard r.residualZeroPoint == 0 else {
      throw QuantizationError.invalidParameter(
        "a fused residual with zero point \(r.residualZeroPoint) is not supported by oneDNN 2.x")
    }
    attributes.postOps.append(.sum(scale: residualScale))
  }
  if r.lowerBound > -.infinity || r.upperBound < .infinity {
    attributes.postOps.append(
      .eltwise(
        .clip(
          lower: max(r.lowerBound, -.greatestFiniteMagnitude),
          upper: min(r.upperBound, .greatestFiniteMagnitude))))
  }
  if inputZeroPoint != 0 {
    attributes.zeroPoints.append((.source, 0, [inputZeroPoint]))
  }
  if r.outputZeroPoint != 0 {
    attributes.zeroPoints.append((.destination, 0, [r.outputZeroPoint]))
  }
  return attributes
}

/// An int8 primitive with constant weights (and bias) reordered once at build time into the
/// layout the primitive chose: only the activations change between runs. The convolution and
/// inner-product kernels differ only in how they describe their operands.
class Int8WeightedKernel {
  let primitive: DNNLPrimitive
  let sourceDescriptor: DNNLMemoryDescriptor
  let destinationDescriptor: DNNLMemoryDescriptor
  let engine: DNNLEngine
  let weightMemory: DNNLMemory
  let biasMemory: DNNLMemory?

  /// Takes a created primitive and fills its weight (`codes` laid out as `plainWeights`) and
  /// bias memories.
  init(
    engine: DNNLEngine, primitive: DNNLPrimitive, source: DNNLMemoryDescriptor,
    destination: DNNLMemoryDescriptor, plainWeights: DNNLMemoryDescriptor, codes: [Int8],
    bias: [Int32]?, biasDescriptor: DNNLMemoryDescriptor?, label: String
  ) throws {
    self.engine = engine
    self.primitive = primitive
    sourceDescriptor = source
    destinationDescriptor = destination
    guard let target = primitive.memoryDescriptor(.weights) else {
      throw QuantizationError.invalidParameter("'\(label)': the primitive reported no weights")
    }
    var codes = codes
    let weights = try DNNLMemory(allocating: target, engine: engine)
    try codes.withUnsafeMutableBytes { bytes in
      let plain = try DNNLMemory(plainWeights, engine: engine, buffer: bytes.baseAddress)
      try engine.makeReorder(from: plainWeights, to: target, label: "int8 weights of \(label)")
        .execute([(.source, plain), (.destination, weights)])
    }
    weightMemory = weights
    if let bias, let biasDescriptor {
      let memory = try DNNLMemory(allocating: biasDescriptor, engine: engine)
      guard let buffer = memory.buffer else {
        throw QuantizationError.invalidParameter("'\(label)': bias memory has no buffer")
      }
      bias.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
      biasMemory = memory
    } else {
      biasMemory = nil
    }
  }

  /// The execution reading codes at `source` and writing at `destination`.
  func bind(source: UnsafeMutableRawPointer, destination: UnsafeMutableRawPointer) throws
    -> DNNLExecution
  {
    var arguments: [(DNNLArgument, DNNLMemory)] = [
      (.source, try DNNLMemory(sourceDescriptor, engine: engine, buffer: source)),
      (.weights, weightMemory),
      (.destination, try DNNLMemory(destinationDescriptor, engine: engine, buffer: destination)),
    ]
    if let biasMemory { arguments.append((.bias, biasMemory)) }
    return primitive.bind(arguments)
  }
}

/// A oneDNN int8 2-D convolution with the engine's semantics: NHWC codes in and out, OHWI int8
/// weights, int32 bias, requantisation by `Requantization`.
final class Int8ConvolutionKernel: Int8WeightedKernel {
  /// `floatOutput` gives a float32 destination receiving `m·(acc + bias)` (the last layer
  /// of a classifier, dequantised inside the kernel).
  init(
    engine: DNNLEngine, geometry g: Conv2DGeometry, inputType: QuantizedType,
    inputZeroPoint: Int32, weights: [Int8], bias: [Int32]?, requantization r: Requantization,
    floatOutput: Bool = false, label: String
  ) throws {
    try g.validate()
    let cinPerGroup = g.inputChannels / g.groups
    let coutPerGroup = g.outputChannels / g.groups
    guard weights.count == g.outputChannels * g.kernelHeight * g.kernelWidth * cinPerGroup else {
      throw QuantizationError.shapeMismatch(
        "conv '\(label)': \(weights.count) weight codes for geometry \(g)")
    }
    let source = try DNNLMemoryDescriptor(
      dims: [g.batch, g.inputChannels, g.inputHeight, g.inputWidth],
      dataType: dnnlDataType(inputType), format: .nhwc)
    let destination = try DNNLMemoryDescriptor(
      dims: [g.batch, g.outputChannels, g.outputHeight, g.outputWidth],
      dataType: floatOutput ? .f32 : dnnlDataType(r.outputType), format: .nhwc)
    // OHWI codes described by strides: dims [G, O/G, I/G, kh, kw] (or [O, I, kh, kw]).
    let kh = g.kernelHeight
    let kw = g.kernelWidth
    let plainWeights: DNNLMemoryDescriptor
    if g.groups == 1 {
      plainWeights = try DNNLMemoryDescriptor(
        dims: [g.outputChannels, cinPerGroup, kh, kw], dataType: .s8,
        strides: [kh * kw * cinPerGroup, 1, kw * cinPerGroup, cinPerGroup])
    } else {
      plainWeights = try DNNLMemoryDescriptor(
        dims: [g.groups, coutPerGroup, cinPerGroup, kh, kw], dataType: .s8,
        strides: [
          coutPerGroup * kh * kw * cinPerGroup, kh * kw * cinPerGroup, 1, kw * cinPerGroup,
          cinPerGroup,
        ])
    }
    let biasDescriptor = try bias.map { _ in
      try DNNLMemoryDescriptor(dims: [g.outputChannels], dataType: .s32, format: .a)
    }
    let primitive = try engine.makeConvolution(
      source: source,
      weights: DNNLMemoryDescriptor(dims: plainWeights.dims, dataType: .s8, format: .any),
      bias: biasDescriptor, destination: destination,
      strides: [g.strides.height, g.strides.width],
      dilations: [g.dilations.height, g.dilations.width],
      paddingLeft: [g.pads.top, g.pads.left], paddingRight: [g.pads.bottom, g.pads.right],
      attributes: int8Attributes(r, inputZeroPoint: inputZeroPoint), label: label)
    try super.init(
      engine: engine, primitive: primitive, source: source, destination: destination,
      plainWeights: plainWeights, codes: weights, bias: bias, biasDescriptor: biasDescriptor,
      label: label)
  }
}

/// A oneDNN int8 inner product `[m, k] · [n, k]ᵀ` with the engine's semantics (the int8 form of
/// `ReferenceKernels.gemm`).
final class Int8InnerProductKernel: Int8WeightedKernel {
  /// `weights` are `[n, k]` row-major codes; `floatOutput` as for convolutions.
  init(
    engine: DNNLEngine, m: Int, n: Int, k: Int, inputType: QuantizedType, inputZeroPoint: Int32,
    weights: [Int8], bias: [Int32]?, requantization r: Requantization, floatOutput: Bool = false,
    label: String
  ) throws {
    guard m > 0, n > 0, k > 0, weights.count == n * k, bias.map({ $0.count == n }) ?? true else {
      throw QuantizationError.shapeMismatch(
        "inner product '\(label)': m=\(m) n=\(n) k=\(k), \(weights.count) weights")
    }
    guard r.residualScale == nil else {
      throw QuantizationError.invalidParameter(
        "inner product '\(label)': a fused residual is not supported")
    }
    // oneDNN 2.x inner products take no source zero point: fold it into the bias.
    var bias = bias
    var inputZeroPoint = inputZeroPoint
    if inputZeroPoint != 0 {
      bias = biasFolding(
        sourceZeroPoint: inputZeroPoint, into: bias, weights: weights, outputs: n)
      inputZeroPoint = 0
    }
    // Nor a destination zero point: add it as a linear post-op after the clamp, the same
    // float32 addition before the rounding store.
    var attributes = try int8Attributes(r, inputZeroPoint: inputZeroPoint)
    if r.outputZeroPoint != 0 {
      attributes.zeroPoints.removeAll { $0.0 == .destination }
      attributes.postOps.append(.eltwise(.linear(scale: 1, shift: Float(r.outputZeroPoint))))
    }
    let source = try DNNLMemoryDescriptor(
      dims: [m, k], dataType: dnnlDataType(inputType), format: .ab)
    let destination = try DNNLMemoryDescriptor(
      dims: [m, n], dataType: floatOutput ? .f32 : dnnlDataType(r.outputType), format: .ab)
    let biasDescriptor = try bias.map { _ in
      try DNNLMemoryDescriptor(dims: [n], dataType: .s32, format: .a)
    }
    let primitive = try engine.makeInnerProduct(
      source: source,
      weights: DNNLMemoryDescriptor(dims: [n, k], dataType: .s8, format: .any),
      bias: biasDescriptor, destination: destination, attributes: attributes, label: label)
    try super.init(
      engine: engine, primitive: primitive, source: source, destination: destination,
      plainWeights: try DNNLMemoryDescriptor(dims: [n, k], dataType: .s8, format: .ab),
      codes: weights, bias: bias, biasDescriptor: biasDescriptor, label: label)
  }
}

/// oneDNN max pooling on NHWC codes: the maximum of codes is exact in any integer type, and
/// oneDNN ignores padded cells for max pooling, as ONNX does.
final class Int8MaxPoolKernel {
  let primitive: DNNLPrimitive
  let sourceDescriptor: DNNLMemoryDescriptor
  let destinationDescriptor: DNNLMemoryDescriptor
  private let engine: DNNLEngine

  /// Shapes are NCHW dims (the memory is NHWC); pads are `[top, left]` / `[bottom, right]`.
  init(
    engine: DNNLEngine, type: QuantizedType, input: [Int], output: [Int], kernel: [Int],
    strides: [Int], paddingLeft: [Int], paddingRight: [Int], dilations: [Int], label: String
  ) throws {
    self.engine = engine
    sourceDescriptor = try DNNLMemoryDescriptor(
      dims: input, dataType: dnnlDataType(type), format: .nhwc)
    destinationDescriptor = try DNNLMemoryDescriptor(
      dims: output, dataType: dnnlDataType(type), format: .nhwc)
    primitive = try engine.makePooling(
      .max, source: sourceDescriptor, destination: destinationDescriptor, kernel: kernel,
      strides: strides, paddingLeft: paddingLeft, paddingRight: paddingRight,
      dilations: dilations, label: label)
  }

  /// The execution reading codes at `source` and writing at `destination`.
  func bind(source: UnsafeMutableRawPointer, destination: UnsafeMutableRawPointer) throws
    -> DNNLExecution
  {
    primitive.bind([
      (.source, try DNNLMemory(sourceDescriptor, engine: engine, buffer: source)),
      (.destination, try DNNLMemory(destinationDescriptor, engine: engine, buffer: destination)),
    ])
  }
}
