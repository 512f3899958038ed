import Foundation
import TestSupport
import Testing

@testable import Model

/// Post-op chains the convolution cases exercise, with the ONNX nodes that compute the same thing.
enum TestPostOp: Sendable, CustomStringConvertible {
  case relu, relu6, hardswish, geluErf, residualSum

  var description: String { "\(self)" }
}

struct ConvolutionCase: Sendable, CustomTestStringConvertible {
  var label: String
  var batch = 1
  var inputChannels: Int
  var outputChannels: Int
  var height: Int
  var width: Int
  var kernel: [Int]
  var strides = [1, 1]
  var dilations = [1, 1]
  /// top, left, bottom, right (ONNX order: begins then ends).
  var pads = [0, 0, 0, 0]
  var groups = 1
  var bias = true
  var postOps: [TestPostOp] = []

  var testDescription: String { label }

  var outputHeight: Int {
    (height + pads[0] + pads[2] - dilations[0] * (kernel[0] - 1) - 1) / strides[0] + 1
  }
  var outputWidth: Int {
    (width + pads[1] + pads[3] - dilations[1] * (kernel[1] - 1) - 1) / strides[1] + 1
  }

  static let all: [ConvolutionCase] = [
    ConvolutionCase(
      label: "3x3 pad 1 + bias + relu", batch: 2, inputChannels: 8, outputChannels: 16,
      height: 9, width: 9, kernel: [3, 3], pads: [1, 1, 1, 1], postOps: [.relu]),
    ConvolutionCase(
      label: "depthwise 3x3 stride 2 asymmetric pads", inputChannels: 16, outputChannels: 16,
      height: 10, width: 11, kernel: [3, 3], strides: [2, 2], pads: [0, 1, 1, 0], groups: 16),
    ConvolutionCase(
      label: "1x1 without bias", batch: 3, inputChannels: 24, outputChannels: 8, height: 7,
      width: 7, kernel: [1, 1], bias: false),
    ConvolutionCase(
      label: "3x3 dilation 2", inputChannels: 4, outputChannels: 6, height: 12, width: 12,
      kernel: [3, 3], dilations: [2, 2], pads: [2, 2, 2, 2]),
    ConvolutionCase(
      label: "grouped 3x3 (4 groups) + relu6", inputChannels: 8, outputChannels: 12, height: 6,
      width: 6, kernel: [3, 3], pads: [1, 1, 1, 1], groups: 4, postOps: [.relu6]),
    ConvolutionCase(
      label: "4x4 stride 4 stem", batch: 2, inputChannels: 3, outputChannels: 40, height: 32,
      width: 32, kernel: [4, 4], strides: [4, 4]),
    ConvolutionCase(
      label: "1x3 kernel stride 1x2 + hardswish", inputChannels: 5, outputChannels: 7, height: 6,
      width: 9, kernel: [1, 3], strides: [1, 2], pads: [0, 1, 0, 1], postOps: [.hardswish]),
    ConvolutionCase(
      label: "3x3 + residual sum + gelu(erf)", batch: 2, inputChannels: 8, outputChannels: 8,
      height: 8, width: 8, kernel: [3, 3], pads: [1, 1, 1, 1], postOps: [.residualSum, .geluErf]),
  ]
}

@Suite("oneDNN binding against onnxruntime", .serialized)
struct DNNLPrimitiveTests {
  let engine: DNNLEngine
  let layout: LayoutHelper

  init() throws {
    engine = try DNNLEngine(threads: 2)
    layout = LayoutHelper(engine: engine)
  }

  @Test("NCHW -> NHWC reorder matches hand indexing, and round-trips exactly")
  func reorderLayouts() throws {
    let (n, c, h, w) = (2, 5, 3, 4)
    let values = randomValues(n * c * h * w, seed: 1)
    let nhwc = try layout.memory(
      DNNLMemoryDescriptor(dims: [n, c, h, w], dataType: .f32, format: .nhwc), values: values)
    var mismatches = 0
    for in0 in 0..<n {
      for ic in 0..<c {
        for ih in 0..<h {
          for iw in 0..<w
          where
            nhwc.floats[((in0 * h + ih) * w + iw) * c + ic]
            != values[((in0 * c + ic) * h + ih) * w + iw]
          {
            mismatches += 1
          }
        }
      }
    }
    #expect(mismatches == 0)
    #expect(try layout.values(of: nhwc) == values)
  }

  @Test("channel-slice sub-memory of an NHWC tensor reorders to a dense buffer and back")
  func channelSlice() throws {
    let (n, c, h, w) = (2, 16, 3, 3)
    let part = c / 4
    let values = randomValues(n * c * h * w, seed: 2)
    let full = try layout.memory(
      DNNLMemoryDescriptor(dims: [n, c, h, w], dataType: .f32, format: .nhwc), values: values)
    let sliceDescriptor = try full.descriptor.submemory(
      dims: [n, part, h, w], offsets: [0, 0, 0, 0])
    let slice = try DNNLMemory(sliceDescriptor, engine: engine, buffer: full.buffer)
    slice.owner = full
    let dense = try OwnedMemory(
      DNNLMemoryDescriptor(dims: [n, part, h, w], dataType: .f32, format: .nhwc), engine: engine)
    try engine.makeReorder(from: sliceDescriptor, to: dense.descriptor)
      .execute([(.source, slice), (.destination, dense.memory)])
    var expected: [Float] = []
    for in0 in 0..<n {
      for ih in 0..<h {
        for iw in 0..<w {
          for ic in 0..<part { expected.append(values[((in0 * c + ic) * h + ih) * w + iw]) }
        }
      }
    }
    #expect(Array(dense.floats) == expected)
    // Write a changed slice back: only the first C/4 channels may change.
    for index in dense.floats.indices { dense.floats[index] += 10 }
    try engine.makeReorder(from: dense.descriptor, to: sliceDescriptor)
      .execute([(.source, dense.memory), (.destination, slice)])
    let after = try layout.values(of: full)
    var wrong = 0
    for index in values.indices {
      let channel = (index / (h * w)) % c
      let want = channel < part ? values[index] + 10 : values[index]
      if after[index] != want { wrong += 1 }
    }
    #expect(wrong == 0)
  }

  @Test("convolution matches onnxruntime", arguments: ConvolutionCase.all)
  func convolution(_ testCase: ConvolutionCase) throws {
    let t = testCase
    let inputDims = [t.batch, t.inputChannels, t.height, t.width]
    let weightDims = [t.outputChannels, t.inputChannels / t.groups] + t.kernel
    let outputDims = [t.batch, t.outputChannels, t.outputHeight, t.outputWidth]
    let x = randomValues(inputDims.reduce(1, *), seed: 10)
    let weights = randomValues(weightDims.reduce(1, *), seed: 11, in: -0.5...0.5)
    let bias = randomValues(t.outputChannels, seed: 12)
    let residual = randomValues(outputDims.reduce(1, *), seed: 13)

    // Reference graph.
    var inputs = [
      ReferenceTensor(name: "x", shape: inputDims, values: x),
      ReferenceTensor(name: "w", shape: weightDims, values: weights),
    ]
    if t.bias { inputs.append(ReferenceTensor(name: "b", shape: [t.outputChannels], values: bias)) }
    var nodes = [
      ReferenceNode(
        op: "Conv", inputs: t.bias ? ["x", "w", "b"] : ["x", "w"], outputs: ["y0"],
        attributes: [
          "kernel_shape": .ints(t.kernel), "strides": .ints(t.strides),
          "dilations": .ints(t.dilations), "pads": .ints(t.pads), "group": .int(t.groups),
        ])
    ]
    var postOps: [DNNLPostOp] = []
    for (index, op) in t.postOps.enumerated() {
      let input = "y\(index)"
      let output = "y\(index + 1)"
      switch op {
      case .relu:
        nodes.append(ReferenceNode(op: "Relu", inputs: [input], outputs: [output]))
        postOps.append(.eltwise(.relu()))
      case .relu6:
        nodes.append(
          ReferenceNode(
            op: "Clip", inputs: [input], outputs: [output],
            attributes: ["min": .float(0), "max": .float(6)]))
        postOps.append(.eltwise(.clip(lower: 0, upper: 6)))
      case .hardswish:
        nodes.append(ReferenceNode(op: "HardSwish", inputs: [input], outputs: [output]))
        postOps.append(.eltwise(.hardswish))
      case .geluErf:
        nodes.append(ReferenceNode(op: "Gelu", inputs: [input], outputs: [output]))
        postOps.append(.eltwise(.geluErf))
      case .residualSum:
        inputs.append(ReferenceTensor(name: "r", shape: outputDims, values: residual))
        nodes.append(ReferenceNode(op: "Add", inputs: [input, "r"], outputs: [output]))
        postOps.append(.sum())
      }
    }
    // Clip's min/max became inputs in opset 11; use opset 6 semantics only where needed.
    let usesClipAttributes = t.postOps.contains { if case .relu6 = $0 { true } else { false } }
    if usesClipAttributes {
      nodes = nodes.map { node in
        guard node.op == "Clip" else { return node }
        var node = node
        node.attributes = [:]
        node.inputs += ["clip_min", "clip_max"]
        return node
      }
      inputs.append(ReferenceTensor(name: "clip_min", shape: [], values: [0]))
      inputs.append(ReferenceTensor(name: "clip_max", shape: [], values: [6]))
    }
    let expected = try onnxReference(
      nodes: nodes, inputs: inputs, output: "y\(t.postOps.count)")
    #expect(expected.shape == outputDims)

    // oneDNN: NHWC activations, weights in the layout the primitive picks.
    let source = try DNNLMemoryDescriptor(dims: inputDims, dataType: .f32, format: .nhwc)
    let destination = try DNNLMemoryDescriptor(dims: outputDims, dataType: .f32, format: .nhwc)
    let groupedDims =
      t.groups == 1
      ? weightDims : [t.groups, t.outputChannels / t.groups, t.inputChannels / t.groups] + t.kernel
    let weightsAny = try DNNLMemoryDescriptor(dims: groupedDims, dataType: .f32, format: .any)
    let biasDescriptor =
      t.bias ? try DNNLMemoryDescriptor(dims: [t.outputChannels], dataType: .f32, format: .a) : nil
    let convolution = try engine.makeConvolution(
      source: source, weights: weightsAny, bias: biasDescriptor, destination: destination,
      strides: t.strides, dilations: t.dilations, paddingLeft: [t.pads[0], t.pads[1]],
      paddingRight: [t.pads[2], t.pads[3]], attributes: DNNLAttributes(postOps: postOps),
      label: t.label)
    let chosenWeights = try #require(convolution.memoryDescriptor(.weights))
    #expect(!chosenWeights.isFormatAny)
    let xMemory = try layout.memory(source, values: x)
    let wMemory = try layout.memory(chosenWeights, values: weights)
    let yMemory = try layout.memory(
      destination,
      values: t.postOps.contains { if case .residualSum = $0 { true } else { false } }
        ? residual : [Float](repeating: 0, count: residual.count))
    var arguments: [(DNNLArgument, DNNLMemory)] = [
      (.source, xMemory.memory), (.weights, wMemory.memory), (.destination, yMemory.memory),
    ]
    let bMemory = try biasDescriptor.map { try layout.memory($0, values: bias) }
    if let bMemory { arguments.append((.bias, bMemory.memory)) }
    try convolution.execute(arguments)
    expectClose(
      try layout.values(of: yMemory), expected, "\(t.label) [\(convolution.implementation)]")
  }
}
