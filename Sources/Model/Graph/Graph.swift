/// Index of a value in `Graph.values`. Stable across passes: a pass may leave values unused
/// but never renumbers them.
public typealias ValueID = Int

/// A tensor-valued edge of the graph: a graph input, a constant or a node output.
public struct Value: Sendable, Equatable {
  /// The ONNX name (unique within the graph), kept for error messages.
  public var name: String
  /// Element type; shape arithmetic is `int64`, activations are `float32`.
  public var elementType: ElementType
  /// Static shape, batch first; `nil` until shape inference has run.
  public var shape: [Int]?

  /// Creates a value.
  public init(name: String, elementType: ElementType, shape: [Int]? = nil) {
    self.name = name
    self.elementType = elementType
    self.shape = shape
  }
}

/// One dimension of a graph input as the model declares it.
public enum DeclaredDimension: Sendable, Equatable {
  /// A fixed size.
  case fixed(Int)
  /// A symbolic size such as `N` or `batch_size` (or an unnamed unknown).
  case symbolic(String)
}

/// An activation applied element-wise, standalone (`Op.activation`) or as a post-op of a
/// Conv/Gemm.
public enum Activation: Sendable, Equatable {
  /// `max(x, 0)`.
  case relu
  /// `x >= 0 ? x : alpha * x`.
  case leakyRelu(alpha: Float)
  /// `min(max(x, min), max)`; ReLU6 is `clip(0, 6)`. Absent bounds are ±infinity.
  case clip(min: Float, max: Float)
  /// `1 / (1 + exp(-x))`.
  case sigmoid
  /// `max(0, min(1, alpha * x + beta))`.
  case hardSigmoid(alpha: Float, beta: Float)
  /// `x * max(0, min(1, x / 6 + 0.5))` (ONNX HardSwish: alpha 1/6, beta 0.5).
  case hardSwish
  /// Hyperbolic tangent.
  case tanh
  /// `0.5 x (1 + erf(x / sqrt 2))`, or the tanh approximation when `tanhApproximation`.
  case gelu(tanhApproximation: Bool)
}

/// A fused operation applied, in order, to the result of a Conv or Gemm before it is stored.
public enum PostOp: Sendable, Equatable {
  /// An element-wise activation.
  case activation(Activation)
  /// Adds the node's LAST input (same shape as the output) to the running result. The
  /// fusion guarantees that this operand was computed before the node and dies at it, so an
  /// engine may accumulate in place into the operand's buffer (the memory plan assigns the
  /// output the operand's buffer).
  case sum
}

/// How an ONNX `auto_pad` attribute asks for padding; resolved to explicit pads by shape
/// inference, after which it is always `.explicit`.
public enum AutoPad: Sendable, Equatable {
  /// Use the `pads` attribute (ONNX `NOTSET`).
  case explicit
  /// `SAME_UPPER`: output = ceil(input / stride), the odd padding element at the end.
  case sameUpper
  /// `SAME_LOWER`: like `sameUpper` with the odd padding element at the beginning.
  case sameLower
  /// `VALID`: no padding.
  case valid
}

/// Attributes of a convolution. Inputs: `[x, w]` or `[x, w, bias]`, plus the sum operand last
/// when `postOps` contains `.sum`. Use `Node.convolutionBias` and `Node.sumOperand`.
public struct Convolution: Sendable, Equatable {
  /// Spatial kernel size (from the attribute or the weight shape).
  public var kernelShape: [Int]
  /// Per spatial dimension (default 1).
  public var strides: [Int]
  /// ONNX order: all spatial begins, then all spatial ends (`[top, left, bottom, right]`).
  public var pads: [Int]
  /// Per spatial dimension (default 1).
  public var dilations: [Int]
  /// Channel groups; `group == input channels` is a depthwise convolution.
  public var group: Int
  /// How pads were specified; `.explicit` after shape inference.
  public var autoPad: AutoPad
  /// Fused operations applied in order to the result.
  public var postOps: [PostOp]

  /// Creates convolution attributes.
  public init(
    kernelShape: [Int], strides: [Int], pads: [Int], dilations: [Int], group: Int,
    autoPad: AutoPad = .explicit, postOps: [PostOp] = []
  ) {
    self.kernelShape = kernelShape
    self.strides = strides
    self.pads = pads
    self.dilations = dilations
    self.group = group
    self.autoPad = autoPad
    self.postOps = postOps
  }
}

/// Attributes of `Y = alpha * op(A) * op(B) + beta * C`. Inputs `[a, b]` or `[a, b, c]`; A is
/// 2-D `[M, K]` (or `[K, M]` when `transA`), B `[K, N]` (or `[N, K]`), C broadcasts to
/// `[M, N]`. Post-ops never include `.sum`.
public struct Gemm: Sendable, Equatable {
  /// Scale of `op(A) * op(B)`.
  public var alpha: Float
  /// Scale of C.
  public var beta: Float
  /// A is stored `[K, M]`.
  public var transA: Bool
  /// B is stored `[N, K]` (PyTorch Linear layers).
  public var transB: Bool
  /// Fused activations applied in order to the result.
  public var postOps: [PostOp]

  /// Creates Gemm attributes.
  public init(
    alpha: Float = 1, beta: Float = 1, transA: Bool = false, transB: Bool = false,
    postOps: [PostOp] = []
  ) {
    self.alpha = alpha
    self.beta = beta
    self.transA = transA
    self.transB = transB
    self.postOps = postOps
  }

  /// `alpha * op(B)` laid out `[N, K]` (an inner product's weights), from B's values and
  /// stored shape.
  func innerProductWeights(_ b: [Float], shape bShape: [Int]) -> (
    weights: [Float], k: Int, n: Int
  ) {
    let (k, n) = transB ? (bShape[1], bShape[0]) : (bShape[0], bShape[1])
    var weights = [Float](repeating: 0, count: n * k)
    for row in 0..<n {
      for column in 0..<k {
        weights[row * k + column] = alpha * (transB ? b[row * k + column] : b[column * n + row])
      }
    }
    return (weights, k, n)
  }
}

/// Attributes of MaxPool and AveragePool (input `[x]`, NCHW).
public struct Pooling: Sendable, Equatable {
  /// Spatial window size.
  public var kernelShape: [Int]
  /// Per spatial dimension (default 1).
  public var strides: [Int]
  /// ONNX order: begins then ends.
  public var pads: [Int]
  /// Per spatial dimension (default 1; MaxPool only in practice).
  public var dilations: [Int]
  /// Output size rounds up; a window that would start past the input and begin padding is
  /// dropped (the onnxruntime/PyTorch rule).
  public var ceilMode: Bool
  /// AveragePool only: divide by the full window (true) or by the valid elements (false).
  public var countIncludePad: Bool
  /// How pads were specified; `.explicit` after shape inference.
  public var autoPad: AutoPad

  /// Creates pooling attributes.
  public init(
    kernelShape: [Int], strides: [Int], pads: [Int], dilations: [Int], ceilMode: Bool,
    countIncludePad: Bool, autoPad: AutoPad = .explicit
  ) {
    self.kernelShape = kernelShape
    self.strides = strides
    self.pads = pads
    self.dilations = dilations
    self.ceilMode = ceilMode
    self.countIncludePad = countIncludePad
    self.autoPad = autoPad
  }
}

/// Padding modes of Pad.
public enum PadMode: String, Sendable, Equatable {
  /// Fill with the pad value.
  case constant
  /// Mirror without repeating the edge element.
  case reflect
  /// Repeat the edge element.
  case edge
}

/// The element-wise binary operators (numpy broadcasting).
public enum BinaryOperator: Sendable, Equatable {
  /// `a + b`.
  case add
  /// `a - b`.
  case sub
  /// `a * b`.
  case mul
  /// `a / b` (integer division truncates).
  case div
}

/// The canonical operations of the IR.
///
/// Every ONNX spelling of an op (attributes before some opset, inputs after) loads into one
/// case. Parameters that ONNX may pass as tensors (Reshape's shape, Slice's starts/ends, Pad's
/// pads) are `nil` while they are still computed by other nodes; the node then still has the
/// parameter inputs after its data input(s). Shape inference folds those inputs into the
/// attribute and drops them, so after `GraphPasses.inferShapes` every parameter is known and
/// every node has only its data inputs.
public enum Op: Sendable, Equatable {
  /// N-d convolution, see `Convolution`.
  case conv(Convolution)
  /// General matrix multiply, see `Gemm`.
  case gemm(Gemm)
  /// numpy `matmul` (batched, broadcasting), inputs `[a, b]`.
  case matMul
  /// Element-wise binary op with numpy broadcasting, inputs `[a, b]`.
  case binary(BinaryOperator)
  /// Element-wise activation, input `[x]`.
  case activation(Activation)
  /// Element-wise error function, input `[x]`.
  case erf
  /// Softmax over `axis`. When `coerceTo2D` (opset < 13) the input is viewed as 2-D
  /// `[prod(dims < axis), prod(dims >= axis)]` and normalised over the second dimension.
  case softmax(axis: Int, coerceTo2D: Bool)
  /// Inference BatchNormalization, inputs `[x, scale, bias, mean, variance]`, channel axis 1.
  case batchNormalization(epsilon: Float)
  /// `y = x * scale[c] + shift[c]` over channel axis 1, inputs `[x, scale, shift]` (1-D, C).
  /// What a standalone BatchNormalization becomes after folding its statistics.
  case scaleShift
  /// Maximum over each window (padding never wins).
  case maxPool(Pooling)
  /// Mean over each window, see `Pooling.countIncludePad`.
  case averagePool(Pooling)
  /// Mean over all spatial dimensions, keeping them as size 1.
  case globalAveragePool
  /// Mean over `axes` (nil: all axes) with `keepDims`.
  case reduceMean(axes: [Int]?, keepDims: Bool)
  /// Reshape to `[prod(dims < axis), prod(dims >= axis)]`.
  case flatten(axis: Int)
  /// Reshape to `shape` (ONNX: 0 copies the input dim unless `allowZero`, -1 is inferred).
  /// `nil` while the shape is still input 1.
  case reshape(shape: [Int]?, allowZero: Bool)
  /// Permute dimensions (`nil` reverses them).
  case transpose(perm: [Int]?)
  /// Remove the size-1 `axes` (`nil`: all size-1 dims).
  case squeeze(axes: [Int]?)
  /// Insert size-1 dims at `axes` (positions in the output).
  case unsqueeze(axes: [Int])
  /// Concatenate all inputs along `axis`.
  case concat(axis: Int)
  /// Split along `axis` into `sizes` (`nil`: equal parts, one per output).
  case split(axis: Int, sizes: [Int]?)
  /// ONNX Slice: negative indices count from the end, out-of-range ends clamp, `axes` nil
  /// means `0..<starts.count`, `steps` nil means all 1. `starts`/`ends` are `nil` while they
  /// are still inputs 1 and 2.
  case slice(starts: [Int]?, ends: [Int]?, axes: [Int]?, steps: [Int]?)
  /// Pad with `pads` (ONNX order: begins for all axes then ends); `nil` while still input 1.
  case pad(mode: PadMode, pads: [Int]?, value: Float)
  /// Copy (also what Dropout becomes for inference).
  case identity
  /// The input's shape as int64, dims `start..<end` (ONNX opset 15 semantics).
  case shape(start: Int, end: Int?)
  /// numpy `take` along `axis`, inputs `[data, indices]`.
  case gather(axis: Int)
  /// Convert the element type.
  case cast(to: ElementType)
  /// Reserved for the int8 engine: `y = saturate(round(x / scale) + zeroPoint)`, inputs
  /// `[x, scale, zeroPoint]`. Not evaluated yet.
  case quantizeLinear(axis: Int)
  /// Reserved for the int8 engine: `y = (x - zeroPoint) * scale`. Not evaluated yet.
  case dequantizeLinear(axis: Int)

  /// A short name for messages and tests (the ONNX op type where one exists).
  public var name: String {
    switch self {
    case .conv: "Conv"
    case .gemm: "Gemm"
    case .matMul: "MatMul"
    case .binary(let op):
      switch op {
      case .add: "Add"
      case .sub: "Sub"
      case .mul: "Mul"
      case .div: "Div"
      }
    case .activation(let a):
      switch a {
      case .relu: "Relu"
      case .leakyRelu: "LeakyRelu"
      case .clip: "Clip"
      case .sigmoid: "Sigmoid"
      case .hardSigmoid: "HardSigmoid"
      case .hardSwish: "HardSwish"
      case .tanh: "Tanh"
      case .gelu: "Gelu"
      }
    case .erf: "Erf"
    case .softmax: "Softmax"
    case .batchNormalization: "BatchNormalization"
    case .scaleShift: "ScaleShift"
    case .maxPool: "MaxPool"
    case .averagePool: "AveragePool"
    case .globalAveragePool: "GlobalAveragePool"
    case .reduceMean: "ReduceMean"
    case .flatten: "Flatten"
    case .reshape: "Reshape"
    case .transpose: "Transpose"
    case .squeeze: "Squeeze"
    case .unsqueeze: "Unsqueeze"
    case .concat: "Concat"
    case .split: "Split"
    case .slice: "Slice"
    case .pad: "Pad"
    case .identity: "Identity"
    case .shape: "Shape"
    case .gather: "Gather"
    case .cast: "Cast"
    case .quantizeLinear: "QuantizeLinear"
    case .dequantizeLinear: "DequantizeLinear"
    }
  }

  /// The post-ops of a Conv or Gemm, empty for other ops.
  public var postOps: [PostOp] {
    switch self {
    case .conv(let c): c.postOps
    case .gemm(let g): g.postOps
    default: []
    }
  }
}

/// One operation: reads `inputs`, writes `outputs`.
public struct Node: Sendable, Equatable {
  /// The ONNX node name (or a generated one), for error messages.
  public var name: String
  /// What the node computes, with its attributes.
  public var op: Op
  /// Input values in the op's canonical order (see `Op`).
  public var inputs: [ValueID]
  /// Output values (several only for Split).
  public var outputs: [ValueID]

  /// Creates a node.
  public init(name: String, op: Op, inputs: [ValueID], outputs: [ValueID]) {
    self.name = name
    self.op = op
    self.inputs = inputs
    self.outputs = outputs
  }

  /// The residual operand of a `.sum` post-op (the last input), if any.
  public var sumOperand: ValueID? {
    op.postOps.contains(.sum) ? inputs.last : nil
  }

  /// The bias of a Conv (input 2 unless that is the sum operand) or the C of a Gemm.
  public var convolutionBias: ValueID? {
    let count = inputs.count - (sumOperand == nil ? 0 : 1)
    return count >= 3 ? inputs[2] : nil
  }
}

/// A model as a dataflow graph: the IR every pass and engine works on.
///
/// Nodes are in topological order (every input is a graph input, a constant or the output of
/// an earlier node). Passes are functions `Graph -> Graph` (see `GraphPasses`).
///
/// The usual pipeline for an engine:
/// ```
/// let graph = try ONNXLoader.load(contentsOf: url)              // canonical ops, constants
/// let ready = try GraphPasses.prepare(graph, batchSize: 16)     // shapes, folding, fusions
/// let plan = try MemoryPlan(ready)                              // arena offsets
/// ```
/// After `prepare`: every value a node reads or writes has a static `shape`; every node has
/// only its data inputs (Reshape/Slice/Pad parameters are attributes); Conv and pool
/// attributes are complete and explicit (`kernelShape`, `strides`, `dilations`, `pads` in
/// ONNX begin-then-end order, `autoPad == .explicit`); BatchNormalization after a Conv is
/// folded into its weights and elsewhere is a `.scaleShift`; activations following a Conv or
/// Gemm are its `postOps`, a residual Add is a Conv `.sum` post-op reading the Conv's last
/// input; `Dropout` is `identity`; weights are `constants` (float32, NCHW/OIHW layouts as in
/// ONNX). Graph outputs may themselves be constants when a whole branch folds.
public struct Graph: Sendable, Equatable {
  /// All values, indexed by `ValueID`.
  public var values: [Value]
  /// Nodes in topological order.
  public var nodes: [Node]
  /// Values whose contents are known: initializers, Constant nodes and folded results.
  public var constants: [ValueID: Tensor]
  /// The runtime inputs (initializers listed as inputs by old exporters are not included).
  public var inputs: [ValueID]
  /// The declared shapes of `inputs`, same order, before shape inference.
  public var declaredInputShapes: [[DeclaredDimension]]
  /// The values the model returns, in ONNX order.
  public var outputs: [ValueID]
  /// The highest default-domain opset the model imports.
  public var opsetVersion: Int

  /// Creates a graph.
  public init(
    values: [Value], nodes: [Node], constants: [ValueID: Tensor], inputs: [ValueID],
    declaredInputShapes: [[DeclaredDimension]], outputs: [ValueID], opsetVersion: Int
  ) {
    self.values = values
    self.nodes = nodes
    self.constants = constants
    self.inputs = inputs
    self.declaredInputShapes = declaredInputShapes
    self.outputs = outputs
    self.opsetVersion = opsetVersion
  }

  /// Adds a value and returns its id.
  @discardableResult
  public mutating func addValue(_ value: Value) -> ValueID {
    values.append(value)
    return values.count - 1
  }

  /// Adds a constant value holding `tensor`.
  @discardableResult
  public mutating func addConstant(name: String, _ tensor: Tensor) -> ValueID {
    let id = addValue(Value(name: name, elementType: tensor.elementType, shape: tensor.shape))
    constants[id] = tensor
    return id
  }

  /// For each value, the indices of the nodes that read it, in order.
  public func consumers() -> [[Int]] {
    var result = [[Int]](repeating: [], count: values.count)
    for (index, node) in nodes.enumerated() {
      for input in node.inputs where result[input].last != index { result[input].append(index) }
    }
    return result
  }

  /// For each value, the index of the node that writes it (nil for inputs and constants).
  public func producers() -> [Int?] {
    var result = [Int?](repeating: nil, count: values.count)
    for (index, node) in nodes.enumerated() {
      for output in node.outputs { result[output] = index }
    }
    return result
  }

  /// Static shape of a value, or an error naming it when shape inference has not set it.
  public func shape(of id: ValueID) throws -> [Int] {
    guard let shape = values[id].shape else {
      throw ModelError(.invalidGraph, "value '\(values[id].name)' has no inferred shape")
    }
    return shape
  }
}
