import Foundation
import TestSupport
import Testing

@testable import Model

@Suite("Shape inference")
struct ShapeInferenceTests {
  func convShape(_ autoPad: AutoPad, kernel: Int) throws -> (Convolution, [Int]) {
    let c = Convolution(
      kernelShape: [], strides: [2, 2], pads: [], dilations: [], group: 1, autoPad: autoPad)
    let w = Tensor(
      shape: [3, 4, kernel, kernel], floats: [Float](repeating: 0, count: 12 * kernel * kernel))
    let g = try GraphPasses.inferShapes(
      singleNodeGraph(.conv(c), input: [2, 4, 9, 11], constants: [w]))
    guard case .conv(let resolved) = g.nodes[0].op else {
      throw ModelError(.invalidGraph, "not a conv")
    }
    return (resolved, try g.shape(of: g.outputs[0]))
  }

  @Test func autoPadResolvesToExplicitPads() throws {
    // out = ceil(in / stride): 5x6. Kernel 4: total pad h = 4*2+4-9 = 3, w = 5*2+4-11 = 3.
    let (upper, shape) = try convShape(.sameUpper, kernel: 4)
    #expect(shape == [2, 3, 5, 6])
    #expect(upper.pads == [1, 1, 2, 2])
    #expect(upper.autoPad == .explicit)
    #expect(upper.kernelShape == [4, 4])
    let (lower, _) = try convShape(.sameLower, kernel: 4)
    #expect(lower.pads == [2, 2, 1, 1])
    let (valid, validShape) = try convShape(.valid, kernel: 3)
    #expect(valid.pads == [0, 0, 0, 0])
    #expect(validShape == [2, 3, 4, 5])
  }

  @Test func ceilModeDropsWindowStartingInPadding() throws {
    // in 6, k 2, s 2, pad end 1: floor -> 3, ceil -> 4 but the 4th window starts at 6 >= 6 + 0.
    let p = Pooling(
      kernelShape: [1, 2], strides: [1, 2], pads: [0, 0, 0, 1], dilations: [], ceilMode: true,
      countIncludePad: false)
    let g = try GraphPasses.inferShapes(singleNodeGraph(.maxPool(p), input: [1, 1, 1, 6]))
    #expect(try g.shape(of: g.outputs[0]) == [1, 1, 1, 3])
  }

  @Test func symbolicBatchNeedsABatchSize() throws {
    var g = singleNodeGraph(.activation(.relu), input: [1, 3])
    g.declaredInputShapes = [[.symbolic("batch_size"), .fixed(3)]]
    #expect(throws: ModelError.self) { try GraphPasses.inferShapes(g) }
    let inferred = try GraphPasses.inferShapes(g, batchSize: 7)
    #expect(try inferred.shape(of: inferred.outputs[0]) == [7, 3])
    let fixed = try GraphPasses.inferShapes(
      singleNodeGraph(.activation(.relu), input: [1, 3]), batchSize: 4)
    #expect(try fixed.shape(of: fixed.outputs[0]) == [4, 3])
  }

  @Test func symbolicNonBatchDimensionIsRejected() throws {
    var g = singleNodeGraph(.activation(.relu), input: [1, 3])
    g.declaredInputShapes = [[.fixed(1), .symbolic("C")]]
    do {
      _ = try GraphPasses.inferShapes(g, batchSize: 2)
      Issue.record("expected an error")
    } catch let error as ModelError {
      #expect(error.message.contains("'C'"))
      #expect(error.message.contains("'x'"))
    }
  }

  @Test func reshapeZeroAndMinusOne() throws {
    let g = try GraphPasses.inferShapes(
      singleNodeGraph(.reshape(shape: [0, -1, 2], allowZero: false), input: [3, 4, 5, 2]))
    #expect(try g.shape(of: g.outputs[0]) == [3, 20, 2])
    #expect(g.nodes[0].op == .reshape(shape: [3, 20, 2], allowZero: false))
  }

  @Test func badShapesNameTheNode() throws {
    let w = Tensor(shape: [3, 5, 1, 1], floats: [Float](repeating: 0, count: 15))
    let c = Convolution(kernelShape: [], strides: [], pads: [], dilations: [], group: 1)
    do {
      _ = try GraphPasses.inferShapes(
        singleNodeGraph(.conv(c), input: [1, 4, 2, 2], constants: [w]))
      Issue.record("expected an error")
    } catch let error as ModelError {
      #expect(error.kind == .invalidNode)
      #expect(error.message.contains("'node'"))
    }
  }

  /// The float engine's partial-convolution kernel relies on this check for its bias length.
  @Test func convolutionBiasOfTheWrongLengthNamesTheNode() throws {
    let w = Tensor(shape: [3, 4, 3, 3], floats: [Float](repeating: 0, count: 108))
    let b = Tensor(shape: [4], floats: [0, 0, 0, 0])
    let c = Convolution(kernelShape: [], strides: [], pads: [1, 1, 1, 1], dilations: [], group: 1)
    do {
      _ = try GraphPasses.inferShapes(
        singleNodeGraph(.conv(c), input: [1, 4, 5, 5], constants: [w, b]))
      Issue.record("expected an error")
    } catch let error as ModelError {
      #expect(error.kind == .invalidNode)
      #expect(error.message.contains("'node'") && error.message.contains("bias shape must be [3]"))
    }
  }
}
