import Foundation
import TestSupport
import Testing

@testable import Eval

@Suite struct SHA256Tests {
  func digest(_ text: String) -> String {
    var hash = SHA256()
    Array(text.utf8).withUnsafeBytes { hash.update($0) }
    return hash.finalizeHex()
  }

  @Test func fipsExamples() {
    #expect(digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(
      digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
        == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
  }

  @Test(
    .requiresPython)
  func fileDigestMatchesHashlib() throws {
    let directory = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    // Sizes around the 64-byte block and the 1 MiB read chunk.
    for size in [55, 56, 63, 64, 65, 1 << 20, (1 << 20) + 13, 3_000_017] {
      let url = directory.appendingPathComponent("blob-\(size)")
      var generator = SystemRandomNumberGenerator()
      try Data((0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }).write(to: url)
      let reference = try PythonReference.run(
        code:
          "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())",
        arguments: [url.path])
      #expect(
        try SHA256.hexDigest(ofFile: url)
          == reference.trimmingCharacters(in: .whitespacesAndNewlines), "size \(size)")
    }
  }
}
