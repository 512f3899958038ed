extension Array where Element: Numeric {
  /// Makes the array at least `count` elements long, as zeros, when it is shorter; otherwise
  /// leaves it alone. Scratch buffers only grow, so steady state allocates nothing; the old
  /// contents are not kept, because every user overwrites what it reads.
  @inline(__always)
  mutating func growScratch(to count: Int) {
    if self.count < count { self = Array(repeating: 0, count: count) }
  }
}
