import Testing

@testable import Dataset

@Suite struct ScratchTests {
  @Test func growScratchOnlyGrowsAndGrowsToZeros() {
    var buffer: [Int32] = [7, 8]
    buffer.growScratch(to: 1)
    #expect(buffer == [7, 8])
    buffer.growScratch(to: 2)
    #expect(buffer == [7, 8])
    buffer.growScratch(to: 5)
    #expect(buffer == [0, 0, 0, 0, 0])
    var floats: [Float] = []
    floats.growScratch(to: 3)
    #expect(floats == [0, 0, 0])
  }
}
