import Foundation
import TestSupport
import Testing

@testable import Model

/// onnxruntime's output codes for a table kind (scripts/reference/ort_code_tables.py).
private func onnxRuntimeCodes(_ kind: String, _ arguments: [String]) throws -> (
  codes: [Int], ops: [String: Int]
) {
  let printed = try PythonReference.run(
    script: "scripts/reference/ort_code_tables.py", arguments: [kind] + arguments)
  let line = try #require(printed.split(whereSeparator: \.isNewline).last)
  let json = try #require(
    try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
  return (
    try #require(json["codes"] as? [Int]), json["optimized_ops"] as? [String: Int] ?? [:]
  )
}

@Suite(
  "The int8 engine's GELU and residual Add tables equal onnxruntime on the exported QDQ groups",
  .requiresPython)
struct QDQExportTableTests {
  /// (input scale, output scale) pairs of int8 symmetric codes, as calibration makes them
  /// (FasterNet-T0's GELU ranges and odd ones).
  static let geluScales: [(Float, Float)] = [
    (0.0473, 0.0311), (0.0191, 0.0123), (0.1375, 0.1102), (3.1e-3, 1.7e-3), (0.0625, 0.0625),
  ]

  @Test("GELU: every code of int8 tables (written as uint8 + 128) as onnxruntime's Gelu")
  func gelu() throws {
    var differing = 0
    for (sIn, sOut) in Self.geluScales {
      let input = try QuantParams(type: .int8, scale: sIn)
      let output = try QuantParams(type: .int8, scale: sOut)
      let table = try LookupTable.onnxRuntimeGelu(input: input, output: output)
      let reference = try onnxRuntimeCodes(
        "gelu", ["\(sIn)", "128", "\(sOut)", "128"])
      #expect(reference.ops["Gelu"] == 1, "onnxruntime runs the group in float: \(reference.ops)")
      #expect(reference.codes.count == 256)
      // Entry i is code i - 128, which the export writes as uint8 code i.
      let ours = table.entries.map { Int($0) + 128 }
      #expect(ours == reference.codes, "scales \(sIn) → \(sOut)")
      // How often the float64 definition would have differed (printed, not asserted).
      let exact = try LookupTable(.gelu, input: input, output: output)
      differing += zip(exact.entries, table.entries).filter { $0 != $1 }.count
    }
    print("GELU tables: \(differing) entries differ from the float64 definition")
  }

  @Test(
    "residual Add: all 65,536 code pairs as onnxruntime's QLinearAdd",
    arguments: [
      (Float(0.0473), Float(0.0311), Float(0.0521)), (0.0191, 0.1375, 0.1402),
      (0.25, 0.25, 0.5), (3.1e-3, 2.9e-3, 4.4e-3),
    ])
  func add(scales: (Float, Float, Float)) throws {
    let (sa, sb, so) = scales
    let pa = try QuantParams(type: .int8, scale: sa)
    let pb = try QuantParams(type: .int8, scale: sb)
    let po = try QuantParams(type: .int8, scale: so)
    // Every pair of codes through the engine's kernel.
    var a = [Int8](repeating: 0, count: 65_536)
    var b = a
    for i in 0..<65_536 {
      a[i] = Int8(truncatingIfNeeded: i >> 8 &- 128)
      b[i] = Int8(truncatingIfNeeded: (i & 255) &- 128)
    }
    var out = [Int8](repeating: 0, count: 65_536)
    var table = [Int](repeating: 0, count: 65_536)
    try a.withUnsafeBytes { x in
      try b.withUnsafeBytes { y in
        try out.withUnsafeMutableBytes { z in
          let kernel = try Int8AddTableKernel(
            a: (x.baseAddress!, pa), b: (y.baseAddress!, pb), output: (z.baseAddress!, po),
            count: 65_536)
          kernel.run(threads: 2)
          // The pair table (the kernel on CPUs without AVX2/FMA), in uint8 codes.
          for i in 0..<65_536 { table[i] = Int(kernel.entries[i] ^ 0x80) }
        }
      }
    }
    print("Add kernel vectorised (AVX2/FMA): \(Int8AddTableKernel.vectorized)")
    let reference = try onnxRuntimeCodes(
      "add", ["\(sa)", "128", "\(sb)", "128", "\(so)", "128"])
    #expect(reference.ops["QLinearAdd"] == 1, "\(reference.ops)")
    let ours = out.map { Int($0) + 128 }
    let mismatches = zip(ours, reference.codes).filter { $0 != $1 }.count
    #expect(reference.codes.count == 65_536)
    #expect(mismatches == 0, "scales \(scales)")
    #expect(table == reference.codes, "scales \(scales): pair table")
    // The float definition Q(DQ(a) + DQ(b)) rounds differently somewhere (so the test can
    // tell the arithmetics apart); printed for the record.
    var definition = 0
    for i in 0..<65_536 {
      let y = (Float(a[i]) * sa + Float(b[i]) * sb) / so
      let q = Int(min(max(y, -128), 127).rounded(.toNearestOrEven)) + 128
      if q != reference.codes[i] { definition += 1 }
    }
    print("Add \(scales): float definition differs from QLinearAdd on \(definition) pairs")
  }
}
