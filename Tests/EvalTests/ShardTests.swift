import Testing

@testable import Eval

@Suite struct ShardTests {
  @Test func validShardsParse() throws {
    let shard = try Shard(parsing: "2/8")
    #expect(shard.index == 2 && shard.count == 8)
    #expect(shard.contains(10) && shard.contains(2) && !shard.contains(3))
    #expect(try Shard(parsing: "0/1") == .whole)
    #expect(shard.description == "2/8")
  }

  @Test(arguments: [
    ("3/3", "below the count"), ("-1/2", "must not be negative"), ("0/0", "at least 1"),
    ("a/b", "must be integers"), ("1", "expected INDEX/COUNT"), ("1/2/3", "expected INDEX/COUNT"),
    ("", "expected INDEX/COUNT"), ("5/-2", "at least 1"),
  ])
  func invalidShardsGiveClearErrors(text: String, fragment: String) throws {
    let error = try #require(throws: EvalError.self) { try Shard(parsing: text) }
    #expect(error.kind == .input)
    #expect(error.message.contains(fragment), "\(error.message)")
    #expect(error.message.contains("'\(text)'") || error.message.contains(text))
  }

  @Test func shardsPartitionTheSamples() throws {
    let shards = try (0..<4).map { try Shard(index: $0, count: 4) }
    for sample in 0..<50 {
      #expect(shards.filter { $0.contains(sample) }.count == 1)
    }
  }
}
