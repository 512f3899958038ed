import Foundation
import TestSupport
import Testing

@testable import Eval

@Suite struct RecordBuilderTests {
  @Test(
    .requiresPython)
  func topFiveSoftmaxCosineAndKLMatchNumpy() throws {
    // Random logits from numpy with a fixed seed; numpy computes the reference with float64
    // softmax, stable argsort (ties to the lower id) and the textbook formulas.
    let code = """
      import json, numpy as np
      rng = np.random.default_rng(7)
      out = []
      for case in range(6):
          n = [1000, 1001, 10, 5, 3, 1000][case]
          f = (rng.standard_normal(n) * 4).astype(np.float32)
          q = (f + rng.standard_normal(n).astype(np.float32) * 0.5).astype(np.float32)
          if case == 5:
              f[[10, 20, 30]] = 50.0  # ties: lower id first
          def soft(x):
              x = x.astype(np.float64); e = np.exp(x - x.max()); return e / e.sum()
          def top(x):
              order = np.argsort(-x.astype(np.float64), kind='stable')[:min(5, n)]
              return [int(i) for i in order], [float(soft(x)[i]) for i in order]
          p, r = soft(f), soft(q)
          cos = float(np.dot(f.astype(np.float64), q.astype(np.float64)) / (np.linalg.norm(f.astype(np.float64)) * np.linalg.norm(q.astype(np.float64))))
          kl = float(np.sum(p * (np.log(p) - np.log(r))))
          out.append({'f': f.tolist(), 'q': q.tolist(), 'ftop': top(f), 'qtop': top(q), 'cos': cos, 'kl': kl})
      print(json.dumps(out))
      """
    struct Case: Decodable {
      var f: [Float]
      var q: [Float]
      var ftop: [[Double]]
      var qtop: [[Double]]
      var cos: Double
      var kl: Double
    }
    let cases = try JSONDecoder().decode(
      [Case].self, from: Data(PythonReference.run(code: code).utf8))
    #expect(cases.count == 6)
    for (n, c) in cases.enumerated() {
      let builder = try RecordBuilder(engineNames: ["float", "int8"], classCount: c.f.count)
      let record = try c.f.withUnsafeBufferPointer { f in
        try c.q.withUnsafeBufferPointer { q in
          try builder.record(index: n, key: "k\(n)", label: 3, logits: [f, q])
        }
      }
      let float = try #require(record.engines?["float"])
      let int8 = try #require(record.engines?["int8"])
      #expect(float.top5 == c.ftop[0].map { Int($0) }, "case \(n)")
      #expect(int8.top5 == c.qtop[0].map { Int($0) }, "case \(n)")
      for (a, b) in zip(float.scores + int8.scores, c.ftop[1] + c.qtop[1]) {
        #expect(abs(a - b) <= 1e-12 + 1e-9 * b, "case \(n): score \(a) vs \(b)")
      }
      let paired = try #require(record.paired?["int8"])
      #expect(abs(paired.cosine - c.cos) < 1e-12, "case \(n)")
      #expect(abs(paired.kl - c.kl) < 1e-10 + 1e-7 * c.kl, "case \(n): kl \(paired.kl) vs \(c.kl)")
      #expect(record.skip == nil)
    }
  }

  @Test func identicalLogitsHaveCosineOneAndZeroKL() throws {
    let logits: [Float] = [0.5, -1, 3, 2, 2, 0]
    let builder = try RecordBuilder(engineNames: ["float", "int8", "int8-rgb"], classCount: 6)
    let record = try logits.withUnsafeBufferPointer {
      try builder.record(index: 0, key: "a", label: 2, logits: [$0, $0, $0])
    }
    #expect(record.engines?["float"]?.top5 == [2, 3, 4, 0, 5])
    for name in ["int8", "int8-rgb"] {
      let p = try #require(record.paired?[name])
      #expect(abs(p.cosine - 1) < 1e-15)
      #expect(p.kl == 0)
    }
  }

  @Test func nonFiniteLogitsBecomeACountedSkip() throws {
    let good: [Float] = [1, 2, 3]
    let bad: [Float] = [1, .nan, 3]
    let builder = try RecordBuilder(engineNames: ["float", "int8"], classCount: 3)
    let record = try good.withUnsafeBufferPointer { g in
      try bad.withUnsafeBufferPointer { b in
        try builder.record(index: 4, key: "img4", label: 0, logits: [g, b])
      }
    }
    #expect(record.skip?.reason == "non-finite-logits")
    #expect(record.skip?.detail.contains("int8") == true)
    #expect(record.engines == nil)
  }

  @Test func wrongLogitCountIsAnErrorNotACrash() throws {
    let builder = try RecordBuilder(engineNames: ["float"], classCount: 4)
    let short: [Float] = [1, 2]
    #expect(throws: EvalError.self) {
      try short.withUnsafeBufferPointer {
        try builder.record(index: 0, key: "a", label: 0, logits: [$0])
      }
    }
    #expect(throws: EvalError.self) { try RecordBuilder(engineNames: ["a", "a"], classCount: 4) }
  }
}
