import Foundation
import TestSupport
import Testing

@testable import Eval

@Suite struct ClassNamesTests {
  @Test(
    .requiresShared)
  func synsetWordsGiveTheFirstNameOfEachClass() throws {
    let names = try ClassNames.load(from: TestEnvironment.shared("labels/synset_words.txt"))
    #expect(names.count == 1000)
    #expect(names[0] == "tench")
    #expect(names[1] == "goldfish")
    #expect(names[999] == "toilet tissue")
  }

  @Test func plainListsAndErrors() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let plain = directory.appendingPathComponent("names.txt")
    try "cat\nnight-blind dog, other\n".write(to: plain, atomically: true, encoding: .utf8)
    #expect(try ClassNames.load(from: plain) == ["cat", "night-blind dog"])
    try "cat\n\ndog\n".write(to: plain, atomically: true, encoding: .utf8)
    let error = try #require(throws: EvalError.self) { try ClassNames.load(from: plain) }
    #expect(error.message.contains("names.txt:2"))
    #expect(throws: EvalError.self) {
      try ClassNames.load(from: directory.appendingPathComponent("absent"))
    }
  }
}
