import CDNNL

/// Element-wise functions, usable as a standalone primitive or fused as a post-op.
enum DNNLEltwise: Equatable, Sendable {
  /// `x > 0 ? x : slope·x` (slope 0 is ReLU, otherwise LeakyRelu).
  case relu(slope: Float = 0)
  /// `min(max(x, lower), upper)`; ReLU6 is `clip(0, 6)`.
  case clip(lower: Float, upper: Float)
  /// `0.5·x·(1 + erf(x/√2))`, ONNX Gelu's default.
  case geluErf
  /// The tanh approximation of GELU.
  case geluTanh
  /// `x·min(max(x + 3, 0), 6)/6`.
  case hardswish
  /// `1/(1 + e^(-x))`.
  case sigmoid
  case tanh
  /// `x·sigmoid(beta·x)`; SiLU is `swish(beta: 1)`.
  case swish(beta: Float = 1)
  /// `scale·x + shift`.
  case linear(scale: Float, shift: Float)
  /// `alpha·(e^x − 1)` for negative x.
  case elu(alpha: Float = 1)
  case exp, log, abs, sqrt, square, mish

  /// The oneDNN algorithm and its alpha/beta parameters.
  var parameters: (algorithm: dnnl_alg_kind_t, alpha: Float, beta: Float) {
    switch self {
    case .relu(let slope): return (dnnl_eltwise_relu, slope, 0)
    case .clip(let lower, let upper): return (dnnl_eltwise_clip_v2, lower, upper)
    case .geluErf: return (dnnl_eltwise_gelu_erf, 0, 0)
    case .geluTanh: return (dnnl_eltwise_gelu_tanh, 0, 0)
    case .hardswish: return (dnnl_eltwise_hardswish, 0, 0)
    case .sigmoid: return (dnnl_eltwise_logistic, 0, 0)
    case .tanh: return (dnnl_eltwise_tanh, 0, 0)
    case .swish(let beta): return (dnnl_eltwise_swish, beta, 0)
    case .linear(let scale, let shift): return (dnnl_eltwise_linear, scale, shift)
    case .elu(let alpha): return (dnnl_eltwise_elu, alpha, 0)
    case .exp: return (dnnl_eltwise_exp, 0, 0)
    case .log: return (dnnl_eltwise_log, 0, 0)
    case .abs: return (dnnl_eltwise_abs, 0, 0)
    case .sqrt: return (dnnl_eltwise_sqrt, 0, 0)
    case .square: return (dnnl_eltwise_square, 0, 0)
    case .mish: return (dnnl_eltwise_mish, 0, 0)
    }
  }
}

/// Two-input element-wise algorithms (with broadcasting of the second input).
enum DNNLBinaryAlgorithm: Sendable {
  case add, sub, mul, div, max, min

  var raw: dnnl_alg_kind_t {
    switch self {
    case .add: return dnnl_binary_add
    case .sub: return dnnl_binary_sub
    case .mul: return dnnl_binary_mul
    case .div: return dnnl_binary_div
    case .max: return dnnl_binary_max
    case .min: return dnnl_binary_min
    }
  }
}

/// One step of a post-op chain, applied in order to a primitive's result before it is stored.
enum DNNLPostOp {
  /// `dst = scale·f(dst)`.
  case eltwise(DNNLEltwise, scale: Float = 1)
  /// `dst = dst + scale·dst_old`: accumulates into what the destination buffer already holds,
  /// which is how a residual add is fused (the residual is pre-placed in the output buffer).
  case sum(scale: Float = 1)
  /// `dst = dst ∘ src1` with a broadcastable second tensor passed at execution as
  /// `DNNLArgument.postOpSource1(index:)` (`index` is this op's position in the chain).
  case binary(DNNLBinaryAlgorithm, DNNLMemoryDescriptor)
}

/// Primitive attributes: the post-op chain and (for the int8 path) output scales and zero points
/// with oneDNN 2.x semantics `dst = act(oscale[oc]·(acc + bias) + sum_scale·dst_old)`.
struct DNNLAttributes {
  var postOps: [DNNLPostOp] = []
  /// Output scales: one value (mask 0) or one per output channel (mask `1 << 1`).
  var outputScales: (mask: Int32, values: [Float])?
  /// Zero points per argument (`DNNLArgument.source`/`.destination`), one value or per channel.
  var zeroPoints: [(argument: DNNLArgument, mask: Int32, values: [Int32])] = []

  init(postOps: [DNNLPostOp] = []) { self.postOps = postOps }

  var isEmpty: Bool { postOps.isEmpty && outputScales == nil && zeroPoints.isEmpty }

  /// Builds the C attribute object; the caller destroys it once the primitive descriptor (which
  /// keeps its own copy) exists.
  /// `userScratchpad` asks for a scratchpad passed at execution (`DNNLEngine.scratchpad`).
  func makeHandle(for operation: String, userScratchpad: Bool = false) throws
    -> dnnl_primitive_attr_t
  {
    var attr: dnnl_primitive_attr_t?
    try dnnlCheck(dnnl_primitive_attr_create(&attr), "attributes for \(operation)")
    guard let attr else {
      throw DNNLError(operation: "attributes for \(operation)", reason: "no attributes returned")
    }
    do {
      if userScratchpad {
        try dnnlCheck(
          dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
          "user scratchpad for \(operation)")
      }
      if let outputScales {
        try dnnlCheck(
          dnnl_primitive_attr_set_output_scales(
            attr, Int64(outputScales.values.count), outputScales.mask, outputScales.values),
          "output scales for \(operation)")
      }
      for zeroPoint in zeroPoints {
        try dnnlCheck(
          dnnl_primitive_attr_set_zero_points(
            attr, zeroPoint.argument.rawValue, Int64(zeroPoint.values.count), zeroPoint.mask,
            zeroPoint.values),
          "zero points for \(operation)")
      }
      if !postOps.isEmpty {
        var chain: dnnl_post_ops_t?
        try dnnlCheck(dnnl_post_ops_create(&chain), "post-ops for \(operation)")
        guard let chain else {
          throw DNNLError(operation: "post-ops for \(operation)", reason: "no post-ops returned")
        }
        defer { dnnl_post_ops_destroy(chain) }
        for (index, op) in postOps.enumerated() {
          let what = "post-op \(index) (\(op)) of \(operation)"
          switch op {
          case .eltwise(let function, let scale):
            let p = function.parameters
            try dnnlCheck(
              dnnl_post_ops_append_eltwise(chain, scale, p.algorithm, p.alpha, p.beta), what)
          case .sum(let scale):
            try dnnlCheck(dnnl_post_ops_append_sum(chain, scale), what)
          case .binary(let algorithm, let descriptor):
            let status = withUnsafePointer(to: descriptor.raw) {
              dnnl_post_ops_append_binary(chain, algorithm.raw, $0)
            }
            try dnnlCheck(status, what)
          }
        }
        try dnnlCheck(dnnl_primitive_attr_set_post_ops(attr, chain), "post-ops for \(operation)")
      }
    } catch {
      dnnl_primitive_attr_destroy(attr)
      throw error
    }
    return attr
  }
}

/// Execution argument slots (oneDNN's `DNNL_ARG_*`).
struct DNNLArgument: RawRepresentable, Hashable, Sendable {
  let rawValue: Int32
  init(rawValue: Int32) { self.rawValue = rawValue }

  static let source = DNNLArgument(rawValue: DNNL_ARG_SRC)
  static let source1 = DNNLArgument(rawValue: DNNL_ARG_SRC_1)
  static let destination = DNNLArgument(rawValue: DNNL_ARG_DST)
  static let weights = DNNLArgument(rawValue: DNNL_ARG_WEIGHTS)
  static let bias = DNNLArgument(rawValue: DNNL_ARG_BIAS)
  static let scratchpad = DNNLArgument(rawValue: DNNL_ARG_SCRATCHPAD)

  /// The second input of the binary post-op at position `index` in the chain.
  static func postOpSource1(index: Int) -> DNNLArgument {
    DNNLArgument(rawValue: DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE * Int32(index + 1) | DNNL_ARG_SRC_1)
  }
}
