import CFloatKernels
import Foundation
import Testing

@testable import Model

/// The AVX-512 partial convolution of `CFloatKernels` (through `PartialConvolutionKernel`, on the
/// OpenMP team) against the 3×3 convolution written out as loops in double precision: channel
/// counts that fill one to five blocks of 16 partly or exactly, widths that split into uneven
/// tiles, several images, one row and one pixel, in place and out of place, and the restore.
@Suite(
  "AVX-512 partial 3x3 convolution vs loops in double precision",
  .requiresAVX512F(otherwise: "oneDNN's primitives"))
struct PartialConvolutionKernelTests {
  typealias Geometry = PartialConvolutionKernel.Geometry

  /// The convolution of `source`'s first channels, and for each output the sum of the absolute
  /// values of its terms (which bounds float rounding).
  private func reference(
    _ source: [Float], weights: [Float], bias: [Float]?, _ g: Geometry
  ) -> (values: [Double], magnitudes: [Double]) {
    let (c, p) = (g.totalChannels, g.channels)
    var values = [Double](repeating: 0, count: g.rows * g.width * p)
    var magnitudes = values
    for image in 0..<g.images {
      for y in 0..<g.height {
        for x in 0..<g.width {
          let out = ((image * g.height + y) * g.width + x) * p
          for o in 0..<p {
            var sum = Double(bias?[o] ?? 0)
            var magnitude = abs(sum)
            for i in 0..<p {
              for ky in 0..<3 {
                for kx in 0..<3 {
                  let (sy, sx) = (y + ky - 1, x + kx - 1)
                  guard (0..<g.height).contains(sy), (0..<g.width).contains(sx) else { continue }
                  let term =
                    Double(weights[((o * p + i) * 3 + ky) * 3 + kx])
                    * Double(source[((image * g.height + sy) * g.width + sx) * c + i])
                  sum += term
                  magnitude += abs(term)
                }
              }
            }
            values[out + o] = sum
            magnitudes[out + o] = magnitude
          }
        }
      }
    }
    return (values, magnitudes)
  }

  static let geometries: [(Geometry, Bool)] = [
    // FasterNet-T0's four stages at 224×224 (10, 40 and 80 channels: one, three and five blocks).
    (Geometry(images: 1, height: 56, width: 56, totalChannels: 40, channels: 10), false),
    (Geometry(images: 1, height: 14, width: 14, totalChannels: 160, channels: 40), true),
    (Geometry(images: 1, height: 7, width: 7, totalChannels: 320, channels: 80), false),
    // Exactly one and four blocks; tiles of 10 + 9 pixels; groups of three and two blocks.
    (Geometry(images: 1, height: 9, width: 14, totalChannels: 64, channels: 16), false),
    (Geometry(images: 1, height: 13, width: 3, totalChannels: 256, channels: 64), true),
    (Geometry(images: 2, height: 6, width: 19, totalChannels: 36, channels: 9), true),
    (Geometry(images: 3, height: 4, width: 15, totalChannels: 100, channels: 70), true),
    // Three rows split across two threads, each reading the other's rows.
    (Geometry(images: 1, height: 3, width: 29, totalChannels: 84, channels: 80), false),
    // Small enough for one thread; one row; one pixel.
    (Geometry(images: 2, height: 5, width: 9, totalChannels: 24, channels: 6), true),
    (Geometry(images: 2, height: 1, width: 12, totalChannels: 20, channels: 5), false),
    (Geometry(images: 1, height: 1, width: 1, totalChannels: 8, channels: 2), true),
  ]

  @Test(
    "out of place: the convolved channels within float rounding, the others untouched",
    arguments: geometries.indices)
  func outOfPlace(_ index: Int) throws {
    let (g, hasBias) = Self.geometries[index]
    let seed = UInt64(index)
    let source = randomValues(g.rows * g.width * g.totalChannels, seed: seed, in: -2...2)
    let weights = randomValues(g.channels * g.channels * 9, seed: seed + 100, in: -0.3...0.3)
    let bias = hasBias ? randomValues(g.channels, seed: seed + 200) : nil
    var destination = [Float](repeating: .nan, count: source.count)
    try source.withUnsafeBufferPointer { x in
      try destination.withUnsafeMutableBufferPointer { y in
        let kernel = PartialConvolutionKernel(
          source: x.baseAddress!, destination: y.baseAddress!, weights: weights, bias: bias,
          geometry: g)
        try kernel.run()
        // A second run gives the same (the padded copy's border stays zero).
        let first = Array(y)
        try kernel.run()
        #expect(Array(y).elementsEqual(first) { $0.bitPattern == $1.bitPattern })
      }
    }
    let expected = reference(source, weights: weights, bias: bias, g)
    var worst = 0.0
    for pixel in 0..<(g.rows * g.width) {
      for channel in 0..<g.totalChannels {
        let value = destination[pixel * g.totalChannels + channel]
        if channel >= g.channels {
          #expect(value.isNaN, "pixel \(pixel) channel \(channel) was written")
          continue
        }
        let at = pixel * g.channels + channel
        let bound = Double(9 * g.channels + 1) * Double(Float.ulpOfOne) * expected.magnitudes[at]
        let error = abs(Double(value) - expected.values[at])
        worst = max(worst, error / max(bound, .leastNormalMagnitude))
        #expect(
          error <= bound, "pixel \(pixel) channel \(channel): \(value) vs \(expected.values[at])")
      }
    }
    print("\(g): worst error / rounding bound \(worst)")
  }

  @Test(
    "in place: the same result, the untouched channels keep their bits, the restore undoes it",
    arguments: geometries.indices)
  func inPlace(_ index: Int) throws {
    let (g, hasBias) = Self.geometries[index]
    let seed = UInt64(index) + 1000
    let original = randomValues(g.rows * g.width * g.totalChannels, seed: seed, in: -2...2)
    let weights = randomValues(g.channels * g.channels * 9, seed: seed + 100, in: -0.3...0.3)
    let bias = hasBias ? randomValues(g.channels, seed: seed + 200) : nil
    var separate = [Float](repeating: .nan, count: original.count)
    var tensor = original
    try original.withUnsafeBufferPointer { x in
      try separate.withUnsafeMutableBufferPointer { y in
        try PartialConvolutionKernel(
          source: x.baseAddress!, destination: y.baseAddress!, weights: weights, bias: bias,
          geometry: g
        ).run()
      }
    }
    try tensor.withUnsafeMutableBufferPointer { t in
      let kernel = PartialConvolutionKernel(
        source: t.baseAddress!, destination: t.baseAddress!, weights: weights, bias: bias,
        geometry: g)
      try kernel.run()
      for pixel in 0..<(g.rows * g.width) {
        for channel in 0..<g.totalChannels {
          let at = pixel * g.totalChannels + channel
          let expected = channel < g.channels ? separate[at] : original[at]
          #expect(t[at].bitPattern == expected.bitPattern, "pixel \(pixel) channel \(channel)")
        }
      }
      try kernel.restoring().run()
    }
    #expect(tensor.elementsEqual(original) { $0.bitPattern == $1.bitPattern })
  }

  @Test("which convolutions the engine gives the kernel")
  func accepts() {
    func conv(
      kernel: [Int] = [3, 3], strides: [Int] = [1, 1], pads: [Int] = [1, 1, 1, 1],
      dilations: [Int] = [1, 1], group: Int = 1, postOps: [PostOp] = []
    ) -> Convolution {
      Convolution(
        kernelShape: kernel, strides: strides, pads: pads, dilations: dilations, group: group,
        postOps: postOps)
    }
    #expect(PartialConvolutionKernel.accepts(conv(), weightShape: [10, 10, 3, 3]))
    #expect(!PartialConvolutionKernel.accepts(conv(), weightShape: [12, 10, 3, 3]))
    #expect(!PartialConvolutionKernel.accepts(conv(kernel: [5, 5]), weightShape: [10, 10, 5, 5]))
    #expect(!PartialConvolutionKernel.accepts(conv(strides: [2, 2]), weightShape: [10, 10, 3, 3]))
    #expect(
      !PartialConvolutionKernel.accepts(conv(pads: [1, 1, 0, 0]), weightShape: [10, 10, 3, 3]))
    #expect(
      !PartialConvolutionKernel.accepts(conv(dilations: [2, 2]), weightShape: [10, 10, 3, 3]))
    #expect(!PartialConvolutionKernel.accepts(conv(group: 10), weightShape: [10, 1, 3, 3]))
    #expect(
      !PartialConvolutionKernel.accepts(
        conv(postOps: [.activation(.relu)]), weightShape: [10, 10, 3, 3]))
  }
}
