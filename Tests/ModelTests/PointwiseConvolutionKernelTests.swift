import CFloatKernels
import Foundation
import Testing

@testable import Model

/// The AVX-512 1×1 convolution of `CFloatKernels` (through `PointwiseConvolutionKernel`, on the
/// OpenMP team, the work split by output blocks and by pixels) against the sum written out as
/// loops in double precision: output channels in one to nine blocks of 16 (groups of three,
/// and the tails of one and two), pixel counts that leave every tile height and span several
/// of the kernel's L2 chunks, input channel counts from 1 to 768, every epilogue.
@Suite(
  "AVX-512 1x1 convolution vs loops in double precision",
  .requiresAVX512F(otherwise: "oneDNN's convolution"))
struct PointwiseConvolutionKernelTests {
  typealias Epilogue = PointwiseConvolutionKernel.Epilogue

  struct Case: CustomStringConvertible {
    var pixels: Int
    var inputs: Int
    var outputs: Int
    var bias: Bool
    var chain: [PostOp]

    var description: String {
      "\(pixels) px, \(inputs)→\(outputs), bias \(bias), post-ops \(chain)"
    }
  }

  static let cases: [Case] = [
    // FasterNet-T0's stage-4 expansion at batch 1, and a head after global pooling.
    Case(pixels: 49, inputs: 320, outputs: 640, bias: true, chain: [.activation(.relu)]),
    Case(pixels: 1, inputs: 768, outputs: 1280, bias: false, chain: [.activation(.relu)]),
    // The residual sum; with ReLU after it; ReLU6 as Clip.
    Case(pixels: 8, inputs: 96, outputs: 48, bias: true, chain: [.sum]),
    Case(pixels: 50, inputs: 17, outputs: 80, bias: false, chain: [.sum, .activation(.relu)]),
    Case(
      pixels: 13, inputs: 5, outputs: 32, bias: true, chain: [.activation(.clip(min: 0, max: 6))]),
    // One block; one input channel; nine blocks over 392 pixels (batch-8 stage 4 tiles).
    Case(pixels: 3, inputs: 33, outputs: 16, bias: true, chain: []),
    Case(pixels: 20, inputs: 1, outputs: 64, bias: false, chain: []),
    Case(pixels: 392, inputs: 64, outputs: 144, bias: true, chain: [.activation(.relu)]),
    // Three chunks of 511 pixels (128 KB of 64-channel rows), the last one short; stage 3 of
    // FasterNet-T2 at batch 1, which two threads split by pixels.
    Case(pixels: 1100, inputs: 64, outputs: 96, bias: true, chain: [.sum]),
    Case(pixels: 196, inputs: 384, outputs: 768, bias: true, chain: [.activation(.relu)]),
  ]

  @Test(
    "within float rounding of the exact sum, the same bits on a second run and either split",
    arguments: cases)
  func matchesLoops(_ c: Case) throws {
    let seed = UInt64(c.pixels * 7 + c.inputs * 13 + c.outputs)
    let source = randomValues(c.pixels * c.inputs, seed: seed, in: -2...2)
    let weights = randomValues(c.outputs * c.inputs, seed: seed + 1, in: -0.5...0.5)
    let bias = c.bias ? randomValues(c.outputs, seed: seed + 2) : nil
    let previous = randomValues(c.pixels * c.outputs, seed: seed + 3, in: -3...3)
    let epilogue = try #require(Epilogue(c.chain))

    // The engine's buffers outlive its kernels; so do these.
    let input = UnsafeMutableBufferPointer<Float>.allocate(capacity: source.count)
    let destination = UnsafeMutableBufferPointer<Float>.allocate(capacity: previous.count)
    defer {
      input.deallocate()
      destination.deallocate()
    }
    _ = input.initialize(from: source)
    // Each split twice, as the engine runs a kernel batch after batch. Every output is the
    // same sum in the same order whoever computes it: the same bits.
    var runs: [[Float]] = []
    for split in [PointwiseConvolutionKernel.Split.outputBlocks, .pixels] {
      let kernel = PointwiseConvolutionKernel(
        source: input.baseAddress!, destination: destination.baseAddress!, weights: weights,
        bias: bias, pixels: c.pixels, inputs: c.inputs, outputs: c.outputs, epilogue: epilogue,
        split: split)
      for _ in 0..<2 {
        _ = destination.initialize(from: previous)
        try kernel.run()
        runs.append(Array(destination))
      }
    }
    for run in runs.dropFirst() {
      #expect(run.elementsEqual(runs[0]) { $0.bitPattern == $1.bitPattern })
    }

    var worst = 0.0
    for pixel in 0..<c.pixels {
      for o in 0..<c.outputs {
        var sum = Double(bias?[o] ?? 0)
        var magnitude = abs(sum)
        for i in 0..<c.inputs {
          let term = Double(weights[o * c.inputs + i]) * Double(source[pixel * c.inputs + i])
          sum += term
          magnitude += abs(term)
        }
        if epilogue.accumulate {
          sum += Double(previous[pixel * c.outputs + o])
          magnitude += abs(Double(previous[pixel * c.outputs + o]))
        }
        let expected = min(max(sum, Double(epilogue.lower)), Double(epilogue.upper))
        let value = Double(runs[0][pixel * c.outputs + o])
        let bound = Double(c.inputs + 2) * Double(Float.ulpOfOne) * magnitude
        let error = abs(value - expected)
        worst = max(worst, error / max(bound, .leastNormalMagnitude))
        #expect(error <= bound, "pixel \(pixel) output \(o): \(value) vs \(expected)")
      }
    }
    print("\(c): worst error / rounding bound \(worst)")
  }

  @Test(
    "a NaN input stays NaN through ReLU and Clip, as in oneDNN's post-ops",
    arguments: [PointwiseConvolutionKernel.Split.outputBlocks, .pixels])
  func nanPropagates(split: PointwiseConvolutionKernel.Split) throws {
    for chain: [PostOp] in [[.activation(.relu)], [.sum, .activation(.clip(min: 0, max: 6))]] {
      let (pixels, inputs, outputs) = (9, 24, 48)
      var source = randomValues(pixels * inputs, seed: 5, in: -2...2)
      source[2 * inputs + 3] = .nan
      let weights = randomValues(outputs * inputs, seed: 6, in: 0.1...0.5)
      var destination = [Float](repeating: 1, count: pixels * outputs)
      try source.withUnsafeBufferPointer { x in
        try destination.withUnsafeMutableBufferPointer { y in
          try PointwiseConvolutionKernel(
            source: x.baseAddress!, destination: y.baseAddress!, weights: weights, bias: nil,
            pixels: pixels, inputs: inputs, outputs: outputs,
            epilogue: try #require(Epilogue(chain)), split: split
          ).run()
        }
      }
      for pixel in 0..<pixels {
        let row = destination[pixel * outputs..<(pixel + 1) * outputs]
        #expect(row.allSatisfy(\.isNaN) == (pixel == 2), "\(chain): pixel \(pixel)")
      }
    }
  }

  @Test("which post-op chains the kernel's epilogue takes")
  func epilogues() {
    let plain = Epilogue([])
    #expect(plain?.accumulate == false && plain?.lower == -.infinity && plain?.upper == .infinity)
    let sum = Epilogue([.sum])
    #expect(sum?.accumulate == true && sum?.lower == -.infinity)
    let relu = Epilogue([.activation(.relu)])
    #expect(relu?.accumulate == false && relu?.lower == 0 && relu?.upper == .infinity)
    let sumClip = Epilogue([.sum, .activation(.clip(min: 0, max: 6))])
    #expect(sumClip?.accumulate == true && sumClip?.lower == 0 && sumClip?.upper == 6)
    // An activation before the sum, two activations, other activations, an empty range.
    #expect(Epilogue([.activation(.relu), .sum]) == nil)
    #expect(Epilogue([.activation(.relu), .activation(.relu)]) == nil)
    #expect(Epilogue([.activation(.sigmoid)]) == nil)
    #expect(Epilogue([.activation(.leakyRelu(alpha: 0.1))]) == nil)
    #expect(Epilogue([.activation(.gelu(tanhApproximation: false))]) == nil)
    #expect(Epilogue([.activation(.clip(min: 2, max: 1))]) == nil)
  }

  @Test("which convolutions the engine gives the kernel, and when it expects a gain")
  func accepts() {
    func conv(
      kernel: [Int] = [1, 1], strides: [Int] = [1, 1], pads: [Int] = [0, 0, 0, 0],
      dilations: [Int] = [1, 1], group: Int = 1
    ) -> Convolution {
      Convolution(
        kernelShape: kernel, strides: strides, pads: pads, dilations: dilations, group: group,
        postOps: [])
    }
    #expect(PointwiseConvolutionKernel.accepts(conv(), weightShape: [32, 10, 1, 1]))
    #expect(!PointwiseConvolutionKernel.accepts(conv(), weightShape: [40, 10, 1, 1]))
    #expect(
      !PointwiseConvolutionKernel.accepts(conv(kernel: [3, 3]), weightShape: [32, 10, 3, 3]))
    #expect(
      !PointwiseConvolutionKernel.accepts(conv(strides: [2, 2]), weightShape: [32, 10, 1, 1]))
    #expect(
      !PointwiseConvolutionKernel.accepts(conv(pads: [1, 1, 1, 1]), weightShape: [32, 10, 1, 1]))
    #expect(
      !PointwiseConvolutionKernel.accepts(conv(dilations: [2, 2]), weightShape: [32, 10, 1, 1]))
    #expect(!PointwiseConvolutionKernel.accepts(conv(group: 2), weightShape: [32, 5, 1, 1]))
    typealias Kernel = PointwiseConvolutionKernel
    // Two threads: every convolution, split by pixels from four 7-pixel tiles per thread.
    // FasterNet-T2 at batch 1: stages 1 to 3 (3136 to 196 pixels) by pixels, stage 4 (49
    // pixels: seven tiles) and the head (one pixel) by output blocks.
    #expect(Kernel.split(pixels: 3136, inputs: 96, outputs: 192, threads: 2) == .pixels)
    #expect(Kernel.split(pixels: 196, inputs: 384, outputs: 768, threads: 2) == .pixels)
    #expect(Kernel.split(pixels: 56, inputs: 8, outputs: 16, threads: 2) == .pixels)
    #expect(Kernel.split(pixels: 49, inputs: 8, outputs: 16, threads: 2) == .outputBlocks)
    #expect(Kernel.split(pixels: 49, inputs: 768, outputs: 1536, threads: 2) == .outputBlocks)
    #expect(Kernel.split(pixels: 1, inputs: 768, outputs: 1280, threads: 2) == .outputBlocks)
    #expect(Kernel.split(pixels: 98, inputs: 384, outputs: 768, threads: 2) == .pixels)
    #expect(Kernel.split(pixels: 98, inputs: 384, outputs: 768, threads: 4) == .outputBlocks)
    // One thread (a batch shard): only with at least 10 KB of weights per pixel. T2's stage 4
    // of eight images (392 pixels) yes, stage 3 no; the head after global pooling, even for 16.
    #expect(Kernel.split(pixels: 392, inputs: 768, outputs: 1536, threads: 1) == .outputBlocks)
    #expect(Kernel.split(pixels: 1568, inputs: 384, outputs: 768, threads: 1) == nil)
    #expect(Kernel.split(pixels: 16, inputs: 768, outputs: 1280, threads: 1) == .outputBlocks)
  }
}
