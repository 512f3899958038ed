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

/// A oneDNN int8 2-D convolution with the engine's semantics: NHWC codes in and out, OHWI int8
/// weights (reordered once into the primitive's layout), int32 bias, requantisation by
/// `Requantization`. Buffers are bound at `bind`, so the engine binds arena slices once.
/// An int8 primitive with constant weights (and bias) reordered at build time: only the
/// activations change between runs.
protocol Int8WeightedKernel {
  var primitive: DNNLPrimitive { get }
  var sourceDescriptor: DNNLMemoryDescriptor { get }
  var destinationDescriptor: DNNLMemoryDescriptor { get }
  var engine: DNNLEngine { get }
  var weightMemory: DNNLMemory { get }
  var biasMemory: DNNLMemory? { get }
}

extension Int8WeightedKernel {
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

final class Int8ConvolutionKernel: Int8WeightedKernel {
  let primitive: DNNLPrimitive
  let sourceDescriptor: DNNLMemoryDescriptor
  let destinationDescriptor: DNNLMemoryDescriptor
  let engine: DNNLEngine
  let weightMemory: DNNLMemory
  let biasMemory: DNNLMemory?

  /// `outputType` nil means a float32 destination receiving `m·(acc + bias)` (the last layer
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
    self.engine = engine
    sourceDescriptor = try DNNLMemoryDescriptor(
      dims: [g.batch, g.inputChannels, g.inputHeight, g.inputWidth],
      dataType: dnnlDataType(inputType), format: .nhwc)
    destinationDescriptor = try DNNLMemoryDescriptor(
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
    let anyWeights = try DNNLMemoryDescriptor(
      dims: plainWeights.dims, dataType: .s8, format: .any)
    let biasDescriptor = try bias.map { _ in
      try DNNLMemoryDescriptor(dims: [g.outputChannels], dataType: .s32, format: .a)
    }
    primitive = try engine.makeConvolution(
      source: sourceDescriptor, weights: anyWeights, bias: biasDescriptor,
      destination: destinationDescriptor, strides: [g.strides.height, g.strides.width],
      dilations: [g.dilations.height, g.dilations.width],
      paddingLeft: [g.pads.top, g.pads.left], paddingRight: [g.pads.bottom, g.pads.right],
      attributes: int8Attributes(r, inputZeroPoint: inputZeroPoint), label: label)
    weightMemory = try Self.reordered(
      weights, from: plainWeights, to: primitive.memoryDescriptor(.weights), engine: engine,
      label: label)
    if let bias, let biasDescriptor {
      biasMemory = try Self.copied(bias, as: biasDescriptor, engine: engine)
    } else {
      biasMemory = nil
    }
  }

  /// A library-owned memory in `target`'s layout holding `codes` laid out as `plain`.
  static func reordered(
    _ codes: [Int8], from plain: DNNLMemoryDescriptor, to target: DNNLMemoryDescriptor?,
    engine: DNNLEngine, label: String
  ) throws -> DNNLMemory {
    guard let target else {
      throw QuantizationError.invalidParameter("'\(label)': the primitive reported no weights")
    }
    var codes = codes
    let result = try DNNLMemory(allocating: target, engine: engine)
    try codes.withUnsafeMutableBytes { bytes in
      let source = try DNNLMemory(plain, engine: engine, buffer: bytes.baseAddress)
      try engine.makeReorder(from: plain, to: target, label: "int8 weights of \(label)").execute([
        (.source, source), (.destination, result),
      ])
    }
    return result
  }

  /// A library-owned memory holding `values` as they are (plain layout).
  static func copied(_ values: [Int32], as descriptor: DNNLMemoryDescriptor, engine: DNNLEngine)
    throws -> DNNLMemory
  {
    let result = try DNNLMemory(allocating: descriptor, engine: engine)
    guard let buffer = result.buffer else {
      throw QuantizationError.invalidParameter("bias memory has no buffer")
    }
    values.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    return result
  }
}

/// A oneDNN int8 inner product `[m, k] · [n, k]ᵀ` with the engine's semantics (the int8 form of
/// `ReferenceKernels.gemm`).
final class Int8InnerProductKernel: Int8WeightedKernel {
  let primitive: DNNLPrimitive
  let sourceDescriptor: DNNLMemoryDescriptor
  let destinationDescriptor: DNNLMemoryDescriptor
  let engine: DNNLEngine
  let weightMemory: DNNLMemory
  let biasMemory: DNNLMemory?

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
    // oneDNN 2.x inner products take no source zero point: fold it into the bias exactly,
    // Σ (q_x - zp_x)·w = Σ q_x·w - zp_x·Σ w, in int32.
    var bias = bias
    var inputZeroPoint = inputZeroPoint
    if inputZeroPoint != 0 {
      bias = (0..<n).map { row in
        let sum = weights[(row * k)..<((row + 1) * k)].reduce(Int32(0)) { $0 &+ Int32($1) }
        return (bias?[row] ?? 0) &- inputZeroPoint &* sum
      }
      inputZeroPoint = 0
    }
    // Nor a destination zero point: add it as a linear post-op after the clamp, the same
    // float32 addition before the rounding store.
    var attributes = try int8Attributes(r, inputZeroPoint: inputZeroPoint)
    if r.outputZeroPoint != 0 {
      attributes.zeroPoints.removeAll { $0.0 == .destination }
      attributes.postOps.append(.eltwise(.linear(scale: 1, shift: Float(r.outputZeroPoint))))
    }
    self.engine = engine
    sourceDescriptor = try DNNLMemoryDescriptor(
      dims: [m, k], dataType: dnnlDataType(inputType), format: .ab)
    destinationDescriptor = try DNNLMemoryDescriptor(
      dims: [m, n], dataType: floatOutput ? .f32 : dnnlDataType(r.outputType), format: .ab)
    let plainWeights = try DNNLMemoryDescriptor(dims: [n, k], dataType: .s8, format: .ab)
    let biasDescriptor = try bias.map { _ in
      try DNNLMemoryDescriptor(dims: [n], dataType: .s32, format: .a)
    }
    primitive = try engine.makeInnerProduct(
      source: sourceDescriptor,
      weights: DNNLMemoryDescriptor(dims: [n, k], dataType: .s8, format: .any),
      bias: biasDescriptor, destination: destinationDescriptor,
      attributes: attributes, label: label)
    weightMemory = try Int8ConvolutionKernel.reordered(
      weights, from: plainWeights, to: primitive.memoryDescriptor(.weights), engine: engine,
      label: label)
    if let bias, let biasDescriptor {
      biasMemory = try Int8ConvolutionKernel.copied(bias, as: biasDescriptor, engine: engine)
    } else {
      biasMemory = nil
    }
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
