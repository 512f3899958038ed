import CDNNL

/// Pooling algorithms; the two averages differ in whether padded cells count in the divisor
/// (ONNX AveragePool `count_include_pad`).
enum DNNLPooling: Sendable {
  case max, averageIncludingPadding, averageExcludingPadding

  var raw: dnnl_alg_kind_t {
    switch self {
    case .max: return dnnl_pooling_max
    case .averageIncludingPadding: return dnnl_pooling_avg_include_padding
    case .averageExcludingPadding: return dnnl_pooling_avg_exclude_padding
    }
  }
}

/// How a convolution computes: directly, or by Winograd's minimal filtering (3×3, stride 1:
/// fewer multiplications, results within rounding of the direct sum; oneDNN implements it for
/// channel-blocked layouts on AVX-512).
enum DNNLConvolutionAlgorithm: Sendable {
  case direct, winograd

  var raw: dnnl_alg_kind_t {
    switch self {
    case .direct: return dnnl_convolution_direct
    case .winograd: return dnnl_convolution_winograd
    }
  }
}

/// Reduction algorithms.
enum DNNLReduction: Sendable {
  case mean

  var raw: dnnl_alg_kind_t {
    switch self {
    case .mean: return dnnl_reduction_mean
    }
  }
}

/// Factories for the forward-inference primitives the engines use. Descriptors may use
/// `DNNLFormat.any` where the primitive should choose (weights); query the choice with
/// `DNNLPrimitive.memoryDescriptor(_:)`.
extension DNNLEngine {
  /// Copies between layouts and/or data types (e.g. NCHW→NHWC, OIHW→blocked weights).
  func makeReorder(
    from source: DNNLMemoryDescriptor, to destination: DNNLMemoryDescriptor,
    attributes: DNNLAttributes = DNNLAttributes(), label: String = ""
  ) throws -> DNNLPrimitive {
    let name = "reorder\(Self.quoted(label)) \(source) -> \(destination)"
    return try makePrimitive(name, attributes) { pd, attr in
      withUnsafePointer(to: source.raw) { src in
        withUnsafePointer(to: destination.raw) { dst in
          dnnl_reorder_primitive_desc_create(&pd, src, engine, dst, engine, attr)
        }
      }
    }
  }

  /// A 2D convolution. `weights` has dims `[O, I, kh, kw]`, or `[G, O/G, I/G, kh, kw]` when
  /// grouped (depthwise: `[C, 1, 1, kh, kw]`). `dilations` follow ONNX (1 = dense); padding is
  /// per spatial dimension, top/left in `paddingLeft`, bottom/right in `paddingRight`.
  func makeConvolution(
    source: DNNLMemoryDescriptor, weights: DNNLMemoryDescriptor, bias: DNNLMemoryDescriptor?,
    destination: DNNLMemoryDescriptor, strides: [Int], dilations: [Int], paddingLeft: [Int],
    paddingRight: [Int], algorithm: DNNLConvolutionAlgorithm = .direct,
    attributes: DNNLAttributes = DNNLAttributes(), label: String = ""
  ) throws -> DNNLPrimitive {
    let name =
      "\(algorithm == .winograd ? "Winograd " : "")convolution\(Self.quoted(label)) src \(source) "
      + "weights \(weights) dst \(destination) strides \(strides) dilations \(dilations) pads \(paddingLeft)/\(paddingRight)"
    let spatial = source.dims.count - 2
    guard strides.count == spatial, dilations.count == spatial, paddingLeft.count == spatial,
      paddingRight.count == spatial, dilations.allSatisfy({ $0 >= 1 })
    else {
      throw DNNLError(operation: name, reason: "geometry does not match \(spatial) spatial dims")
    }
    var desc = dnnl_convolution_desc_t()
    var src = source.raw
    var wei = weights.raw
    var dst = destination.raw
    // oneDNN counts dilation as the gap between taps (0 = dense), ONNX as the tap spacing.
    let status = withOptionalPointer(bias?.raw) { biasPointer in
      dnnl_dilated_convolution_forward_desc_init(
        &desc, dnnl_forward_inference, algorithm.raw, &src, &wei,
        biasPointer, &dst, DNNLMemoryDescriptor.padded(strides),
        DNNLMemoryDescriptor.padded(dilations.map { $0 - 1 }),
        DNNLMemoryDescriptor.padded(paddingLeft), DNNLMemoryDescriptor.padded(paddingRight))
    }
    try dnnlCheck(status, name)
    return try makePrimitive(name, attributes, describedBy: &desc)
  }

  /// `dst[n, o] = Σ_i src[n, i]·weights[o, i] + bias[o]` (ONNX Gemm with transB = 1). A 4D
  /// source with matching 4D weights flattens C×H×W.
  func makeInnerProduct(
    source: DNNLMemoryDescriptor, weights: DNNLMemoryDescriptor, bias: DNNLMemoryDescriptor?,
    destination: DNNLMemoryDescriptor, attributes: DNNLAttributes = DNNLAttributes(),
    label: String = ""
  ) throws -> DNNLPrimitive {
    let name =
      "inner product\(Self.quoted(label)) src \(source) weights \(weights) dst \(destination)"
    var desc = dnnl_inner_product_desc_t()
    var src = source.raw
    var wei = weights.raw
    var dst = destination.raw
    let status = withOptionalPointer(bias?.raw) { biasPointer in
      dnnl_inner_product_forward_desc_init(
        &desc, dnnl_forward_inference, &src, &wei, biasPointer, &dst)
    }
    try dnnlCheck(status, name)
    return try makePrimitive(name, attributes, describedBy: &desc)
  }

  /// Batched matrix product `[.., M, K] × [.., K, N] (+ bias) → [.., M, N]` with broadcasting
  /// of batch dimensions of size 1.
  func makeMatmul(
    source: DNNLMemoryDescriptor, weights: DNNLMemoryDescriptor, bias: DNNLMemoryDescriptor?,
    destination: DNNLMemoryDescriptor, attributes: DNNLAttributes = DNNLAttributes(),
    label: String = ""
  ) throws -> DNNLPrimitive {
    let name = "matmul\(Self.quoted(label)) src \(source) weights \(weights) dst \(destination)"
    var desc = dnnl_matmul_desc_t()
    var src = source.raw
    var wei = weights.raw
    var dst = destination.raw
    let status = withOptionalPointer(bias?.raw) { biasPointer in
      dnnl_matmul_desc_init(&desc, &src, &wei, biasPointer, &dst)
    }
    try dnnlCheck(status, name)
    return try makePrimitive(name, attributes, describedBy: &desc)
  }

  /// Max or average pooling over 2D windows.
  func makePooling(
    _ algorithm: DNNLPooling, source: DNNLMemoryDescriptor, destination: DNNLMemoryDescriptor,
    kernel: [Int], strides: [Int], paddingLeft: [Int], paddingRight: [Int],
    dilations: [Int]? = nil, attributes: DNNLAttributes = DNNLAttributes(), label: String = ""
  ) throws -> DNNLPrimitive {
    let name =
      "\(algorithm) pooling\(Self.quoted(label)) src \(source) dst \(destination) kernel \(kernel) "
      + "strides \(strides) pads \(paddingLeft)/\(paddingRight)"
    let dilations = dilations ?? kernel.map { _ in 1 }
    var desc = dnnl_pooling_v2_desc_t()
    var src = source.raw
    var dst = destination.raw
    try dnnlCheck(
      dnnl_pooling_v2_forward_desc_init(
        &desc, dnnl_forward_inference, algorithm.raw, &src, &dst,
        DNNLMemoryDescriptor.padded(strides), DNNLMemoryDescriptor.padded(kernel),
        DNNLMemoryDescriptor.padded(dilations.map { $0 - 1 }),
        DNNLMemoryDescriptor.padded(paddingLeft), DNNLMemoryDescriptor.padded(paddingRight)),
      name)
    return try makePrimitive(name, attributes, describedBy: &desc)
  }

  /// A standalone element-wise function; source and destination share `data`'s layout (the
  /// two may be the same buffer).
  func makeEltwise(
    _ function: DNNLEltwise, data: DNNLMemoryDescriptor, label: String = ""
  ) throws -> DNNLPrimitive {
    let name = "eltwise \(function)\(Self.quoted(label)) \(data)"
    var desc = dnnl_eltwise_desc_t()
    var md = data.raw
    let p = function.parameters
    try dnnlCheck(
      dnnl_eltwise_forward_desc_init(
        &desc, dnnl_forward_inference, p.algorithm, &md, p.alpha, p.beta),
      name)
    return try makePrimitive(name, DNNLAttributes(), describedBy: &desc)
  }

  /// `dst = src0 ∘ src1`, where each dimension of `source1` equals `source0`'s or is 1.
  func makeBinary(
    _ algorithm: DNNLBinaryAlgorithm, source0: DNNLMemoryDescriptor,
    source1: DNNLMemoryDescriptor, destination: DNNLMemoryDescriptor,
    attributes: DNNLAttributes = DNNLAttributes(), label: String = ""
  ) throws -> DNNLPrimitive {
    let name =
      "binary \(algorithm)\(Self.quoted(label)) \(source0) with \(source1) -> \(destination)"
    var desc = dnnl_binary_desc_t()
    var src0 = source0.raw
    var src1 = source1.raw
    var dst = destination.raw
    try dnnlCheck(dnnl_binary_desc_init(&desc, algorithm.raw, &src0, &src1, &dst), name)
    return try makePrimitive(name, attributes, describedBy: &desc)
  }

  /// A reduction of `source` into `destination`, whose dims are `source`'s with 1 on the
  /// reduced axes.
  func makeReduction(
    _ algorithm: DNNLReduction, source: DNNLMemoryDescriptor, destination: DNNLMemoryDescriptor,
    label: String = ""
  ) throws -> DNNLPrimitive {
    let name = "reduction \(algorithm)\(Self.quoted(label)) \(source) -> \(destination)"
    var desc = dnnl_reduction_desc_t()
    var src = source.raw
    var dst = destination.raw
    try dnnlCheck(dnnl_reduction_desc_init(&desc, algorithm.raw, &src, &dst, 0, 0), name)
    return try makePrimitive(name, DNNLAttributes(), describedBy: &desc)
  }

  /// Softmax (or log-softmax) along `axis`.
  func makeSoftmax(
    source: DNNLMemoryDescriptor, destination: DNNLMemoryDescriptor, axis: Int,
    logarithmic: Bool = false, label: String = ""
  ) throws -> DNNLPrimitive {
    let name = "softmax\(Self.quoted(label)) \(source) axis \(axis)"
    var desc = dnnl_softmax_v2_desc_t()
    var src = source.raw
    var dst = destination.raw
    try dnnlCheck(
      dnnl_softmax_v2_forward_desc_init(
        &desc, dnnl_forward_inference, logarithmic ? dnnl_softmax_log : dnnl_softmax_accurate,
        &src, &dst, Int32(axis)), name)
    return try makePrimitive(name, DNNLAttributes(), describedBy: &desc)
  }

  /// Concatenates sources along `axis` into `destination` (inputs are `.source` +
  /// `DNNLArgument.multipleSource(i)`).
  func makeConcat(
    sources: [DNNLMemoryDescriptor], destination: DNNLMemoryDescriptor, axis: Int,
    label: String = ""
  ) throws -> DNNLPrimitive {
    let name = "concat\(Self.quoted(label)) of \(sources.count) along \(axis) -> \(destination)"
    let raws = sources.map(\.raw)
    return try makePrimitive(name, DNNLAttributes()) { pd, attr in
      withUnsafePointer(to: destination.raw) { dst in
        raws.withUnsafeBufferPointer { srcs in
          dnnl_concat_primitive_desc_create(
            &pd, dst, Int32(srcs.count), Int32(axis), srcs.baseAddress, attr, engine)
        }
      }
    }
  }

  /// The primitive that `desc`, an initialised oneDNN operation descriptor
  /// (`dnnl_*_desc_t`), describes on this engine.
  private func makePrimitive(
    _ name: String, _ attributes: DNNLAttributes, describedBy desc: UnsafeRawPointer
  ) throws -> DNNLPrimitive {
    try makePrimitive(name, attributes) { pd, attr in
      dnnl_primitive_desc_create(&pd, desc, attr, engine, nil)
    }
  }

  private func makePrimitive(
    _ name: String, _ attributes: DNNLAttributes,
    _ create: (inout dnnl_primitive_desc_t?, const_dnnl_primitive_attr_t?) -> dnnl_status_t
  ) throws -> DNNLPrimitive {
    let attr =
      attributes.isEmpty && !usesUserScratchpad
      ? nil : try attributes.makeHandle(for: name, userScratchpad: usesUserScratchpad)
    defer { if let attr { dnnl_primitive_attr_destroy(attr) } }
    var pd: dnnl_primitive_desc_t?
    try dnnlCheck(create(&pd, attr), "primitive descriptor for \(name)")
    guard let pd else {
      throw DNNLError(operation: name, reason: "no primitive descriptor returned")
    }
    return try DNNLPrimitive(name: name, engine: self, descriptor: pd)
  }

  private static func quoted(_ label: String) -> String { label.isEmpty ? "" : " '\(label)'" }
}

extension DNNLArgument {
  /// The `index`-th input of a concat (`DNNL_ARG_MULTIPLE_SRC + index`).
  static func multipleSource(_ index: Int) -> DNNLArgument {
    DNNLArgument(rawValue: DNNL_ARG_MULTIPLE_SRC + Int32(index))
  }
}

/// Passes a pointer to `value`, or nil, to a C function with an optional descriptor argument.
private func withOptionalPointer<R>(
  _ value: dnnl_memory_desc_t?, _ body: (UnsafePointer<dnnl_memory_desc_t>?) -> R
) -> R {
  guard let value else { return body(nil) }
  return withUnsafePointer(to: value) { body($0) }
}
