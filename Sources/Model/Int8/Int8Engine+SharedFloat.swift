extension Int8Engine {
  /// Lets `other` (the same quantised model built for another thread count) use this engine's
  /// float engine for its layer report, instead of building one: calibration leaves its float
  /// engine on the engine it built. Does nothing when `other` already has one.
  public func shareFloatEngine(with other: Int8Engine) {
    if other.floatEngine == nil { other.floatEngine = floatEngine }
  }
}
