import Foundation

/// Interval estimates and tests used by the metrics, kept separate so they can be checked
/// against hand-computed values.
public enum Statistics {
  /// The two-sided 95% normal quantile, Φ⁻¹(0.975).
  public static let z95 = 1.959963984540054

  /// The Wilson score interval for `successes` out of `trials`, as proportions in [0, 1].
  ///
  /// Unlike the normal approximation it stays inside [0, 1] and behaves at 0% and 100%. With
  /// no trials nothing is known, so the interval is the whole range.
  public static func wilsonInterval(successes: Int, trials: Int, z: Double = z95) -> (
    lower: Double, upper: Double
  ) {
    guard trials > 0 else { return (0, 1) }
    let n = Double(trials)
    let p = Double(successes) / n
    let z2 = z * z
    let denominator = 1 + z2 / n
    let center = (p + z2 / (2 * n)) / denominator
    let half = z / denominator * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot()
    // At 0% and 100% the bound is exactly 0 or 1; rounding would leave 0.9999999999999999.
    let lower = successes == 0 ? 0 : max(0, center - half)
    let upper = successes == trials ? 1 : min(1, center + half)
    return (lower, upper)
  }

  /// The exact two-sided McNemar test p-value for `b` and `c` discordant pairs.
  ///
  /// Under the null hypothesis each discordant pair goes either way with probability ½, so
  /// p = min(1, 2·P(X ≤ min(b, c))) with X ~ Binomial(b + c, ½). Terms are summed in log space
  /// so tens of thousands of flips neither overflow nor underflow.
  public static func mcnemarExactP(b: Int, c: Int) -> Double {
    let n = b + c
    guard n > 0 else { return 1 }
    let k = min(b, c)
    let logHalfPowN = Double(n) * -M_LN2
    // log C(n, i) via lgamma; accumulate with log-sum-exp relative to the largest term (i = k).
    var logTerms = [Double]()
    logTerms.reserveCapacity(k + 1)
    for i in 0...k {
      logTerms.append(logBinomial(n, i) + logHalfPowN)
    }
    let largest = logTerms.max() ?? 0
    var sum = 0.0
    for term in logTerms { sum += exp(term - largest) }
    let tail = exp(largest + log(sum))
    return min(1, 2 * tail)
  }

  static func logBinomial(_ n: Int, _ k: Int) -> Double {
    lgamma(Double(n + 1)) - lgamma(Double(k + 1)) - lgamma(Double(n - k + 1))
  }
}
