import Foundation
import TestSupport
import Testing

@testable import Model

/// The quantization tests' seeded generator (TestSupport's SplitMix64).
typealias QuantRandom = SplitMix64

extension SplitMix64 {
  /// A standard normal sample (Box–Muller).
  mutating func gaussian() -> Double {
    let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self)
    let u2 = Double.random(in: 0..<1, using: &self)
    return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
  }
}

/// Runs `scripts/reference/<script>` on a JSON case written to a temporary file and decodes
/// its JSON output.
func quantReference(_ script: String, case object: Any) throws -> Any {
  let directory = try TestEnvironment.makeTemporaryDirectory("quant-ref")
  defer { try? FileManager.default.removeItem(at: directory) }
  let file = directory.appendingPathComponent("case.json")
  try JSONSerialization.data(withJSONObject: object).write(to: file)
  let output = try PythonReference.run(
    script: "scripts/reference/\(script)", arguments: [file.path])
  return try JSONSerialization.jsonObject(with: Data(output.utf8))
}

/// The reference's list of output codes.
func quantReferenceCodes(_ object: [String: Any]) throws -> [Int] {
  guard let codes = try quantReference("quant_kernels.py", case: object) as? [Int] else {
    throw QuantizationError.invalidParameter("reference did not print a list of integers")
  }
  return codes
}

/// Random int8 convolution parameters for geometry `g`, drawn in this order: OHWI weight codes
/// in -127...127, per-output-channel weight scales in 0.001...0.02, int32 biases in
/// -3000...3000.
func randomConvolutionParameters(_ g: Conv2DGeometry, using random: inout QuantRandom) -> (
  weights: [Int8], weightScales: [Float], bias: [Int32]
) {
  let cinPerGroup = g.inputChannels / g.groups
  let weights = (0..<(g.outputChannels * g.kernelHeight * g.kernelWidth * cinPerGroup)).map {
    _ in Int8.random(in: -127...127, using: &random)
  }
  let weightScales = (0..<g.outputChannels).map { _ in
    Float.random(in: 0.001...0.02, using: &random)
  }
  let bias = (0..<g.outputChannels).map { _ in Int32.random(in: -3000...3000, using: &random) }
  return (weights, weightScales, bias)
}

/// `ReferenceKernels.conv2d` on arrays, writing `output`; a nil `bias` or `residual` is
/// passed as nil.
func referenceConv2d<In: FixedWidthInteger, Out: FixedWidthInteger>(
  input: [In], inputZeroPoint: Int32, weights: [Int8], bias: [Int32]?, geometry: Conv2DGeometry,
  requantization: Requantization, residual: [Out]?, output: inout [Out]
) throws {
  try input.withUnsafeBufferPointer { x in
    try weights.withUnsafeBufferPointer { w in
      try (bias ?? []).withUnsafeBufferPointer { b in
        try (residual ?? []).withUnsafeBufferPointer { res in
          try output.withUnsafeMutableBufferPointer { y in
            try ReferenceKernels.conv2d(
              input: x, inputZeroPoint: inputZeroPoint, weights: w, bias: bias == nil ? nil : b,
              geometry: geometry, requantization: requantization,
              residual: residual == nil ? nil : res, output: y)
          }
        }
      }
    }
  }
}
