import Foundation
import TestSupport
import Testing

@testable import Model

struct EltwiseCase: Sendable, CustomTestStringConvertible {
  var label: String
  var function: DNNLEltwise
  /// The ONNX node(s) computing the same function from "x" into "y".
  var nodes: [ReferenceNode]
  var extraInputs: [(String, Float)] = []
  var testDescription: String { label }

  static let all: [EltwiseCase] = [
    EltwiseCase(
      label: "relu", function: .relu(),
      nodes: [ReferenceNode(op: "Relu", inputs: ["x"], outputs: ["y"])]),
    EltwiseCase(
      label: "leaky relu 0.1", function: .relu(slope: 0.1),
      nodes: [
        ReferenceNode(
          op: "LeakyRelu", inputs: ["x"], outputs: ["y"], attributes: ["alpha": .float(0.1)])
      ]),
    EltwiseCase(
      label: "clip -1..2", function: .clip(lower: -1, upper: 2),
      nodes: [ReferenceNode(op: "Clip", inputs: ["x", "lo", "hi"], outputs: ["y"])],
      extraInputs: [("lo", -1), ("hi", 2)]),
    EltwiseCase(
      label: "gelu erf", function: .geluErf,
      nodes: [ReferenceNode(op: "Gelu", inputs: ["x"], outputs: ["y"])]),
    EltwiseCase(
      label: "gelu tanh", function: .geluTanh,
      nodes: [
        ReferenceNode(
          op: "Gelu", inputs: ["x"], outputs: ["y"], attributes: ["approximate": .string("tanh")])
      ]),
    EltwiseCase(
      label: "hardswish", function: .hardswish,
      nodes: [ReferenceNode(op: "HardSwish", inputs: ["x"], outputs: ["y"])]),
    EltwiseCase(
      label: "sigmoid", function: .sigmoid,
      nodes: [ReferenceNode(op: "Sigmoid", inputs: ["x"], outputs: ["y"])]),
    EltwiseCase(
      label: "tanh", function: .tanh,
      nodes: [ReferenceNode(op: "Tanh", inputs: ["x"], outputs: ["y"])]),
    EltwiseCase(
      label: "swish (SiLU)", function: .swish(),
      nodes: [
        ReferenceNode(op: "Sigmoid", inputs: ["x"], outputs: ["s"]),
        ReferenceNode(op: "Mul", inputs: ["x", "s"], outputs: ["y"]),
      ]),
    EltwiseCase(
      label: "elu 0.5", function: .elu(alpha: 0.5),
      nodes: [
        ReferenceNode(op: "Elu", inputs: ["x"], outputs: ["y"], attributes: ["alpha": .float(0.5)])
      ]),
    EltwiseCase(
      label: "exp", function: .exp, nodes: [ReferenceNode(op: "Exp", inputs: ["x"], outputs: ["y"])]
    ),
    EltwiseCase(
      label: "linear 0.5x+0.25", function: .linear(scale: 0.5, shift: 0.25),
      nodes: [
        ReferenceNode(op: "Mul", inputs: ["x", "a"], outputs: ["m"]),
        ReferenceNode(op: "Add", inputs: ["m", "b"], outputs: ["y"]),
      ], extraInputs: [("a", 0.5), ("b", 0.25)]),
    EltwiseCase(
      label: "mish", function: .mish,
      nodes: [ReferenceNode(op: "Mish", inputs: ["x"], outputs: ["y"])]),
  ]
}

@Suite("oneDNN binding: dense, pooling, element-wise and softmax primitives", .serialized)
struct DNNLOperationTests {
  let engine: DNNLEngine
  let layout: LayoutHelper

  init() throws {
    engine = try DNNLEngine(threads: 2)
    layout = LayoutHelper(engine: engine)
  }

  @Test("inner product (Gemm transB=1 with bias) matches onnxruntime")
  func innerProduct() throws {
    let (n, k, m) = (3, 50, 20)
    let x = randomValues(n * k, seed: 20)
    let w = randomValues(m * k, seed: 21)
    let b = randomValues(m, seed: 22)
    let expected = try onnxReference(
      nodes: [
        ReferenceNode(
          op: "Gemm", inputs: ["x", "w", "b"], outputs: ["y"], attributes: ["transB": .int(1)])
      ],
      inputs: [
        ReferenceTensor(name: "x", shape: [n, k], values: x),
        ReferenceTensor(name: "w", shape: [m, k], values: w),
        ReferenceTensor(name: "b", shape: [m], values: b),
      ], output: "y")
    let source = try DNNLMemoryDescriptor(dims: [n, k], dataType: .f32, format: .ab)
    let destination = try DNNLMemoryDescriptor(dims: [n, m], dataType: .f32, format: .ab)
    let biasDescriptor = try DNNLMemoryDescriptor(dims: [m], dataType: .f32, format: .a)
    let primitive = try engine.makeInnerProduct(
      source: source, weights: DNNLMemoryDescriptor(dims: [m, k], dataType: .f32, format: .any),
      bias: biasDescriptor, destination: destination)
    let weightsDescriptor = try #require(primitive.memoryDescriptor(.weights))
    let xm = try layout.memory(source, values: x)
    let wm = try layout.memory(weightsDescriptor, values: w)
    let bm = try layout.memory(biasDescriptor, values: b)
    let ym = try OwnedMemory(destination, engine: engine)
    try primitive.execute([
      (.source, xm.memory), (.weights, wm.memory), (.bias, bm.memory), (.destination, ym.memory),
    ])
    expectClose(try layout.values(of: ym), expected, "inner product [\(primitive.implementation)]")
  }

  @Test("inner product on an NHWC N×C×1×1 tensor (classifier after global pooling) + relu")
  func innerProductOnPooledFeatures() throws {
    let (n, c, m) = (4, 64, 10)
    let x = randomValues(n * c, seed: 23)
    let w = randomValues(m * c, seed: 24)
    let expected = try onnxReference(
      nodes: [
        ReferenceNode(op: "Flatten", inputs: ["x"], outputs: ["f"]),
        ReferenceNode(
          op: "Gemm", inputs: ["f", "w"], outputs: ["g"], attributes: ["transB": .int(1)]),
        ReferenceNode(op: "Relu", inputs: ["g"], outputs: ["y"]),
      ],
      inputs: [
        ReferenceTensor(name: "x", shape: [n, c, 1, 1], values: x),
        ReferenceTensor(name: "w", shape: [m, c], values: w),
      ], output: "y")
    let source = try DNNLMemoryDescriptor(dims: [n, c, 1, 1], dataType: .f32, format: .nhwc)
    let destination = try DNNLMemoryDescriptor(dims: [n, m], dataType: .f32, format: .ab)
    let primitive = try engine.makeInnerProduct(
      source: source,
      weights: DNNLMemoryDescriptor(dims: [m, c, 1, 1], dataType: .f32, format: .any),
      bias: nil, destination: destination, attributes: DNNLAttributes(postOps: [.eltwise(.relu())]))
    let xm = try layout.memory(source, values: x)
    let wm = try layout.memory(try #require(primitive.memoryDescriptor(.weights)), values: w)
    let ym = try OwnedMemory(destination, engine: engine)
    try primitive.execute([(.source, xm.memory), (.weights, wm.memory), (.destination, ym.memory)])
    expectClose(
      try layout.values(of: ym), expected, "pooled inner product [\(primitive.implementation)]")
  }

  @Test("batched matmul with a broadcast weight matrix and bias matches onnxruntime")
  func matmul() throws {
    let (batch, rows, inner, columns) = (2, 5, 7, 3)
    let a = randomValues(batch * rows * inner, seed: 30)
    let b = randomValues(inner * columns, seed: 31)
    let bias = randomValues(columns, seed: 32)
    let expected = try onnxReference(
      nodes: [
        ReferenceNode(op: "MatMul", inputs: ["a", "b"], outputs: ["p"]),
        ReferenceNode(op: "Add", inputs: ["p", "c"], outputs: ["y"]),
      ],
      inputs: [
        ReferenceTensor(name: "a", shape: [batch, rows, inner], values: a),
        ReferenceTensor(name: "b", shape: [inner, columns], values: b),
        ReferenceTensor(name: "c", shape: [columns], values: bias),
      ], output: "y")
    let aDescriptor = try DNNLMemoryDescriptor(
      dims: [batch, rows, inner], dataType: .f32, format: .abc)
    let bDescriptor = try DNNLMemoryDescriptor(
      dims: [1, inner, columns], dataType: .f32, format: .abc)
    let biasDescriptor = try DNNLMemoryDescriptor(
      dims: [1, 1, columns], dataType: .f32, format: .abc)
    let yDescriptor = try DNNLMemoryDescriptor(
      dims: [batch, rows, columns], dataType: .f32, format: .abc)
    let primitive = try engine.makeMatmul(
      source: aDescriptor, weights: bDescriptor, bias: biasDescriptor, destination: yDescriptor)
    let am = try layout.memory(aDescriptor, values: a)
    let bm = try layout.memory(bDescriptor, values: b)
    let cm = try layout.memory(biasDescriptor, values: bias)
    let ym = try OwnedMemory(yDescriptor, engine: engine)
    try primitive.execute([
      (.source, am.memory), (.weights, bm.memory), (.bias, cm.memory), (.destination, ym.memory),
    ])
    expectClose(try layout.values(of: ym), expected, "matmul [\(primitive.implementation)]")
  }

  struct PoolingCase: Sendable, CustomTestStringConvertible {
    var label: String
    var algorithm: DNNLPooling
    var kernel: [Int]
    var strides: [Int]
    var pads: [Int]
    var testDescription: String { label }
  }

  @Test(
    "pooling matches onnxruntime",
    arguments: [
      PoolingCase(
        label: "max 3x3 s2 p1", algorithm: .max, kernel: [3, 3], strides: [2, 2],
        pads: [1, 1, 1, 1]),
      PoolingCase(
        label: "avg 3x3 s2 asymmetric pads, pad excluded", algorithm: .averageExcludingPadding,
        kernel: [3, 3], strides: [2, 2], pads: [1, 0, 0, 1]),
      PoolingCase(
        label: "avg 3x3 s1 p1, pad included", algorithm: .averageIncludingPadding, kernel: [3, 3],
        strides: [1, 1], pads: [1, 1, 1, 1]),
      PoolingCase(
        label: "global average (9x9 window)", algorithm: .averageExcludingPadding, kernel: [9, 9],
        strides: [1, 1], pads: [0, 0, 0, 0]),
    ])
  func pooling(_ testCase: PoolingCase) throws {
    let (n, c, h, w) = (2, 8, 9, 9)
    let x = randomValues(n * c * h * w, seed: 40)
    let node: ReferenceNode
    switch testCase.algorithm {
    case .max:
      node = ReferenceNode(
        op: "MaxPool", inputs: ["x"], outputs: ["y"],
        attributes: [
          "kernel_shape": .ints(testCase.kernel), "strides": .ints(testCase.strides),
          "pads": .ints(testCase.pads),
        ])
    case .averageExcludingPadding, .averageIncludingPadding:
      node = ReferenceNode(
        op: "AveragePool", inputs: ["x"], outputs: ["y"],
        attributes: [
          "kernel_shape": .ints(testCase.kernel), "strides": .ints(testCase.strides),
          "pads": .ints(testCase.pads),
          "count_include_pad": .int(testCase.algorithm == .averageIncludingPadding ? 1 : 0),
        ])
    }
    let expected = try onnxReference(
      nodes: [node], inputs: [ReferenceTensor(name: "x", shape: [n, c, h, w], values: x)],
      output: "y")
    let source = try DNNLMemoryDescriptor(dims: [n, c, h, w], dataType: .f32, format: .nhwc)
    let destination = try DNNLMemoryDescriptor(dims: expected.shape, dataType: .f32, format: .nhwc)
    let primitive = try engine.makePooling(
      testCase.algorithm, source: source, destination: destination, kernel: testCase.kernel,
      strides: testCase.strides, paddingLeft: Array(testCase.pads[0..<2]),
      paddingRight: Array(testCase.pads[2..<4]))
    let xm = try layout.memory(source, values: x)
    let ym = try OwnedMemory(destination, engine: engine)
    try primitive.execute([(.source, xm.memory), (.destination, ym.memory)])
    expectClose(
      try layout.values(of: ym), expected, "\(testCase.label) [\(primitive.implementation)]")
  }

  @Test("eltwise matches onnxruntime", arguments: EltwiseCase.all)
  func eltwise(_ testCase: EltwiseCase) throws {
    let dims = [2, 5, 4, 3]
    let x = randomValues(dims.reduce(1, *), seed: 50, in: -4...4)
    let expected = try onnxReference(
      nodes: testCase.nodes,
      inputs: [ReferenceTensor(name: "x", shape: dims, values: x)]
        + testCase.extraInputs.map { ReferenceTensor(name: $0.0, shape: [], values: [$0.1]) },
      output: "y")
    let descriptor = try DNNLMemoryDescriptor(dims: dims, dataType: .f32, format: .nhwc)
    let primitive = try engine.makeEltwise(testCase.function, data: descriptor)
    let xm = try layout.memory(descriptor, values: x)
    // In place, as the engine runs standalone activations.
    try primitive.execute([(.source, xm.memory), (.destination, xm.memory)])
    expectClose(
      try layout.values(of: xm), expected, "\(testCase.label) [\(primitive.implementation)]")
  }

  @Test(
    "binary add/mul with per-channel broadcast on NHWC matches onnxruntime",
    arguments: [DNNLBinaryAlgorithm.add, .mul, .sub])
  func binary(_ algorithm: DNNLBinaryAlgorithm) throws {
    let dims = [2, 8, 5, 5]
    let x = randomValues(dims.reduce(1, *), seed: 60)
    let s = randomValues(8, seed: 61)
    let op = algorithm == .add ? "Add" : algorithm == .mul ? "Mul" : "Sub"
    let expected = try onnxReference(
      nodes: [ReferenceNode(op: op, inputs: ["x", "s"], outputs: ["y"])],
      inputs: [
        ReferenceTensor(name: "x", shape: dims, values: x),
        ReferenceTensor(name: "s", shape: [1, 8, 1, 1], values: s),
      ], output: "y")
    let xDescriptor = try DNNLMemoryDescriptor(dims: dims, dataType: .f32, format: .nhwc)
    let sDescriptor = try DNNLMemoryDescriptor(dims: [1, 8, 1, 1], dataType: .f32, format: .nhwc)
    let primitive = try engine.makeBinary(
      algorithm, source0: xDescriptor, source1: sDescriptor, destination: xDescriptor)
    let xm = try layout.memory(xDescriptor, values: x)
    let sm = try layout.memory(sDescriptor, values: s)
    let ym = try OwnedMemory(xDescriptor, engine: engine)
    try primitive.execute([(.source, xm.memory), (.source1, sm.memory), (.destination, ym.memory)])
    expectClose(
      try layout.values(of: ym), expected, "binary \(algorithm) [\(primitive.implementation)]")
  }

  @Test("binary post-op (per-channel layer scale) fused into a 1x1 convolution")
  func binaryPostOp() throws {
    let (n, c, h, w) = (1, 16, 4, 4)
    let x = randomValues(n * c * h * w, seed: 62)
    let weights = randomValues(c * c, seed: 63)
    let scale = randomValues(c, seed: 64)
    let expected = try onnxReference(
      nodes: [
        ReferenceNode(
          op: "Conv", inputs: ["x", "w"], outputs: ["c"],
          attributes: ["kernel_shape": .ints([1, 1])]),
        ReferenceNode(op: "Mul", inputs: ["c", "s"], outputs: ["y"]),
      ],
      inputs: [
        ReferenceTensor(name: "x", shape: [n, c, h, w], values: x),
        ReferenceTensor(name: "w", shape: [c, c, 1, 1], values: weights),
        ReferenceTensor(name: "s", shape: [1, c, 1, 1], values: scale),
      ], output: "y")
    let activation = try DNNLMemoryDescriptor(dims: [n, c, h, w], dataType: .f32, format: .nhwc)
    let scaleDescriptor = try DNNLMemoryDescriptor(
      dims: [1, c, 1, 1], dataType: .f32, format: .nhwc)
    let primitive = try engine.makeConvolution(
      source: activation,
      weights: DNNLMemoryDescriptor(dims: [c, c, 1, 1], dataType: .f32, format: .any),
      bias: nil, destination: activation, strides: [1, 1], dilations: [1, 1], paddingLeft: [0, 0],
      paddingRight: [0, 0], attributes: DNNLAttributes(postOps: [.binary(.mul, scaleDescriptor)]))
    let xm = try layout.memory(activation, values: x)
    let wm = try layout.memory(try #require(primitive.memoryDescriptor(.weights)), values: weights)
    let sm = try layout.memory(scaleDescriptor, values: scale)
    let ym = try OwnedMemory(activation, engine: engine)
    try primitive.execute([
      (.source, xm.memory), (.weights, wm.memory), (.destination, ym.memory),
      (.postOpSource1(index: 0), sm.memory),
    ])
    expectClose(
      try layout.values(of: ym), expected, "conv + binary mul [\(primitive.implementation)]")
  }

  @Test("softmax over 1000 classes matches onnxruntime")
  func softmax() throws {
    let dims = [4, 1000]
    let x = randomValues(dims.reduce(1, *), seed: 70, in: -8...8)
    let expected = try onnxReference(
      nodes: [
        ReferenceNode(op: "Softmax", inputs: ["x"], outputs: ["y"], attributes: ["axis": .int(1)])
      ],
      inputs: [ReferenceTensor(name: "x", shape: dims, values: x)], output: "y")
    let descriptor = try DNNLMemoryDescriptor(dims: dims, dataType: .f32, format: .ab)
    let primitive = try engine.makeSoftmax(source: descriptor, destination: descriptor, axis: 1)
    let xm = try layout.memory(descriptor, values: x)
    let ym = try OwnedMemory(descriptor, engine: engine)
    try primitive.execute([(.source, xm.memory), (.destination, ym.memory)])
    expectClose(try layout.values(of: ym), expected, "softmax [\(primitive.implementation)]")
  }

  @Test("channel concat of NHWC tensors matches onnxruntime")
  func concat() throws {
    let (n, h, w) = (2, 3, 4)
    let channels = [4, 12]
    let parts = channels.enumerated().map {
      randomValues(n * $0.element * h * w, seed: 80 + UInt64($0.offset))
    }
    let expected = try onnxReference(
      nodes: [
        ReferenceNode(
          op: "Concat", inputs: ["a", "b"], outputs: ["y"], attributes: ["axis": .int(1)])
      ],
      inputs: [
        ReferenceTensor(name: "a", shape: [n, channels[0], h, w], values: parts[0]),
        ReferenceTensor(name: "b", shape: [n, channels[1], h, w], values: parts[1]),
      ], output: "y")
    let sources = try channels.map {
      try DNNLMemoryDescriptor(dims: [n, $0, h, w], dataType: .f32, format: .nhwc)
    }
    let destination = try DNNLMemoryDescriptor(dims: [n, 16, h, w], dataType: .f32, format: .nhwc)
    let primitive = try engine.makeConcat(sources: sources, destination: destination, axis: 1)
    let memories = try zip(sources, parts).map { try layout.memory($0.0, values: $0.1) }
    let ym = try OwnedMemory(destination, engine: engine)
    try primitive.execute(
      memories.enumerated().map { (DNNLArgument.multipleSource($0.offset), $0.element.memory) }
        + [(.destination, ym.memory)])
    expectClose(try layout.values(of: ym), expected, "concat [\(primitive.implementation)]")
  }

  @Test("an invalid convolution fails with an error naming the primitive and oneDNN's status")
  func invalidConvolutionError() throws {
    // Output channel count disagrees with the weights: oneDNN must reject it.
    let source = try DNNLMemoryDescriptor(dims: [1, 8, 6, 6], dataType: .f32, format: .nhwc)
    let destination = try DNNLMemoryDescriptor(dims: [1, 5, 6, 6], dataType: .f32, format: .nhwc)
    let weights = try DNNLMemoryDescriptor(dims: [4, 8, 3, 3], dataType: .f32, format: .any)
    let error = #expect(throws: DNNLError.self) {
      try engine.makeConvolution(
        source: source, weights: weights, bias: nil, destination: destination, strides: [1, 1],
        dilations: [1, 1], paddingLeft: [1, 1], paddingRight: [1, 1], label: "blocks.0.conv")
    }
    #expect(error?.operation.contains("'blocks.0.conv'") == true)
    #expect(error?.reason == "invalid_arguments")
    #expect(throws: DNNLError.self) {
      try DNNLMemoryDescriptor(dims: [1, 0, 3], dataType: .f32, format: .abc)
    }
  }
}
