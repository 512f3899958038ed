import Foundation
import TestSupport
import Testing

@testable import Eval

@Suite struct StatisticsTests {
  @Test func wilsonMatchesPublishedValues() {
    // Wilson 95% intervals from Newcombe (1998), Table I: 0/10, 5/10 (p = .5), 10/10.
    let zero = Statistics.wilsonInterval(successes: 0, trials: 10)
    #expect(zero.lower == 0)
    #expect(abs(zero.upper - 0.2775) < 5e-5)
    let half = Statistics.wilsonInterval(successes: 5, trials: 10)
    #expect(abs(half.lower - 0.2366) < 5e-5)
    #expect(abs(half.upper - 0.7634) < 5e-5)
    let all = Statistics.wilsonInterval(successes: 10, trials: 10)
    #expect(abs(all.lower - 0.7225) < 5e-5)
    #expect(all.upper == 1)
  }

  @Test func wilsonByHand() {
    // 81/263, z = 1.96: hand-computed centre (81 + 1.9208)/(263 + 3.8416) = 0.31076, half
    // width 1.96·sqrt(81·182/263 + 0.9604)/(266.8416) = 0.05538 (Newcombe's example 1).
    let i = Statistics.wilsonInterval(successes: 81, trials: 263, z: 1.96)
    #expect(abs(i.lower - 0.2553) < 5e-5)
    #expect(abs(i.upper - 0.3662) < 5e-5)
    let none = Statistics.wilsonInterval(successes: 0, trials: 0)
    #expect(none.lower == 0 && none.upper == 1)
  }

  @Test func mcnemarSmallCasesByHand() {
    // b = 3, c = 11: 2·(C(14,0)+C(14,1)+C(14,2)+C(14,3))/2^14 = 2·470/16384.
    #expect(abs(Statistics.mcnemarExactP(b: 3, c: 11) - 940.0 / 16384.0) < 1e-15)
    #expect(abs(Statistics.mcnemarExactP(b: 11, c: 3) - 940.0 / 16384.0) < 1e-15)
    // b = 0, c = 6: 2/64.
    #expect(abs(Statistics.mcnemarExactP(b: 0, c: 6) - 2.0 / 64.0) < 1e-15)
    // Balanced flips are no evidence at all; none is p = 1.
    #expect(Statistics.mcnemarExactP(b: 5, c: 5) == 1)
    #expect(Statistics.mcnemarExactP(b: 0, c: 0) == 1)
  }

  @Test(
    .requiresPython)
  func mcnemarMatchesExactRationalArithmetic() throws {
    let cases = [(17, 40), (120, 160), (1000, 1100), (2, 300), (4000, 4210)]
    let code = """
      import sys
      from fractions import Fraction
      from math import comb
      for pair in sys.argv[1:]:
          b, c = map(int, pair.split(','))
          n = b + c
          tail = Fraction(sum(comb(n, i) for i in range(min(b, c) + 1)), 2 ** n)
          print(float(min(Fraction(1), 2 * tail)).hex())
      """
    let output = try PythonReference.run(code: code, arguments: cases.map { "\($0.0),\($0.1)" })
    let expected = output.split(separator: "\n").map { Double(String($0))! }
    #expect(expected.count == cases.count)
    for ((b, c), reference) in zip(cases, expected) {
      let p = Statistics.mcnemarExactP(b: b, c: c)
      #expect(abs(p - reference) <= 1e-9 * reference, "b=\(b) c=\(c): \(p) vs \(reference)")
    }
  }
}
