import Foundation
import TestSupport
import Testing

@testable import Dataset

private let tiny = try! ClassIndex(synsets: ["n01440764", "n01443537", "n01484850"])

/// The byte parser against the `Character` parser it must mirror: where the byte parser
/// answers, the answer must be the reference's; where the reference throws, the byte parser must
/// hand over (nil), so the error comes from the reference.
private func agreement(_ text: String, format: GroundTruth.Format) -> String? {
  let reference: GroundTruth?
  do {
    reference = try GroundTruth.load(text: text, path: "F", format: format, classes: tiny)
  } catch {
    reference = nil
  }
  let fast = GroundTruthBytes.parse(Data(text.utf8), format: format, classes: tiny)
  switch (reference, fast) {
  case (nil, nil), (_?, nil):
    return nil
  case (nil, let fast?):
    return "byte parser accepted what the reference rejects: \(fast.labels)"
  case (let reference?, let fast?):
    if reference.labels != fast.labels { return "labels \(fast.labels) vs \(reference.labels)" }
    if reference.source != "F (\(fast.format.rawValue))" {
      return "format \(fast.format) vs \(reference.source)"
    }
    return nil
  }
}

@Suite("Ground truth byte parser")
struct GroundTruthBytesTests {
  @Test("agrees with the Character parser on hand-picked edge cases, and takes the valid ones")
  func edgeCases() throws {
    let valid: [(String, GroundTruth.Format)] = [
      ("ILSVRC2012_val_00000001.JPEG 2\r\nILSVRC2012_val_00000002.JPEG 0\r\n", .auto),
      ("a.JPEG 1\r\r\nb.jpg\t+2 \n\n  \nc.txt -0\r", .auto),
      ("x/y/z.JpEg 1\nw.tar 2\n", .caffe),
      ("ImageId,PredictionString\nILSVRC2012_val_00000002,n01443537 1 2 3 4\nv,n01484850\n", .auto),
      ("\n \t\nImageId,PredictionString\r\nk/a.jpeg,  n01440764\t9\n", .auto),
      ("n01484850\nn01440764\n\n", .auto),
      ("1\n2\n0\n", .perLine),
      ("  n01443537  \r\n\t2\t\n", .perLine),
      ("a\u{0B}1\n", .auto),
    ]
    for (text, format) in valid {
      #expect(agreement(text, format: format) == nil, "\(text.debugDescription)")
      #expect(
        GroundTruthBytes.parse(Data(text.utf8), format: format, classes: tiny) != nil,
        "fast path declined \(text.debugDescription)")
    }
    let declined: [(String, GroundTruth.Format)] = [
      ("a.JPEG 1\nb.JPEG 2\na.JPEG 0\n", .auto),
      ("n01440764\nn09999999\n", .auto),
      ("a.JPEG 1\nb.JPEG 3\n", .auto),
      ("a.JPEG 1\nb.JPEG\n", .auto),
      ("ImageId,PredictionString\nx,n01440764\nx,n01443537\n", .auto),
      ("ImageId,PredictionString\nx\n", .auto),
      ("ImageId,PredictionString\n,n01440764\n", .auto),
      ("ImageId,PredictionString\nx,n0144076\n", .auto),
      ("", .auto), ("\n\n", .caffe), ("a b c\n", .auto), ("1\n2 3\n", .perLine),
      ("a.JPEG 99999999999999999999\n", .auto), ("a.JPEG -1\n", .caffe), ("a.JPEG +\n", .caffe),
      ("\u{0C}\na.JPEG 1\n", .caffe), ("a.JPEG\u{A0}1\n", .auto), ("é.JPEG 1\n", .auto),
      ("n01440764\n", .caffe), ("data 1\n", .kaggleCSV),
    ]
    for (text, format) in declined {
      #expect(agreement(text, format: format) == nil, "\(text.debugDescription)")
      #expect(
        GroundTruthBytes.parse(Data(text.utf8), format: format, classes: tiny) == nil,
        "fast path answered for \(text.debugDescription)")
    }
  }

  @Test("agrees with the Character parser on 3000 random files built from tricky pieces")
  func randomFiles() {
    let pieces = [
      "a.JPEG", "b.jpg", "x/c.PNG", "d.txt", "ImageId,", "ImageId,PredictionString", ",", "e,",
      "n01440764", "n01443537", "n0144076", "n99999999", "0", "1", "2", "3", "-0", "+1", "-1",
      "99999999999999999999", " ", "  ", "\t", "\r", "\u{0B}", "\u{0C}", "\n", "\r\n", "\n",
      "\n",
    ]
    var generator = SplitMix64(seed: 20_261_128)
    var failures: [String] = []
    for _ in 0..<3000 {
      var text = ""
      for _ in 0..<Int(generator.next() % 24) {
        text += pieces[Int(generator.next() % UInt64(pieces.count))]
      }
      let format = GroundTruth.Format.allCases[Int(generator.next() % 4)]
      if let problem = agreement(text, format: format) {
        failures.append("\(text.debugDescription) [\(format)]: \(problem)")
      }
    }
    #expect(failures.isEmpty, "\(failures.count) disagreements, e.g. \(failures.prefix(3))")
  }

  @Test("agrees on 2000 mostly valid random files, and answers for most of them itself")
  func mostlyValidFiles() {
    let keys = ["ILSVRC2012_val_00000001.JPEG", "b.jpg", "x/c.PNG", "d.txt", "e", "f/g.tar"]
    // Per style (Caffe, Kaggle, per line): mostly valid labels, one invalid in each list.
    let tokens = [
      ["0", "1", "2", "+1", "-0", "n01440764", "3"], ["n01440764", "n01443537", "n01484850", "n0"],
      ["0", "1", "2", "n01484850", "-0", "n0"],
    ]
    let spaces = [" ", "  ", "\t", " \t", "\u{0B}"]
    let ends = ["\n", "\n", "\r\n", "\r\r\n", " \n", "\n\n"]
    var generator = SplitMix64(seed: 7)
    func pick(_ list: [String]) -> String { list[Int(generator.next() % UInt64(list.count))] }
    var failures: [String] = []
    var answered = 0
    for _ in 0..<2000 {
      let style = Int(generator.next() % 3)
      let format: GroundTruth.Format =
        generator.next() % 2 == 0 ? .auto : [.caffe, .kaggleCSV, .perLine][style]
      var text = style == 1 ? "ImageId,PredictionString" + pick(ends) : ""
      var used = Set<String>()
      for _ in 0..<Int(1 + generator.next() % 6) {
        var key = pick(keys)
        // Mostly distinct keys, so most files are valid; a repeat now and then is a duplicate.
        if used.contains(key) && generator.next() % 4 != 0 { key = "k\(used.count)" + key }
        used.insert(key)
        switch style {
        case 0:
          text +=
            (generator.next() % 2 == 0 ? "" : pick(spaces)) + key + pick(spaces)
            + pick(tokens[0])
        case 1:
          text +=
            key.replacingOccurrences(of: "/", with: "") + "," + pick(tokens[1])
            + (generator.next() % 2 == 0 ? "" : " 1 2 3 4")
        default: text += pick(tokens[2]) + (generator.next() % 3 == 0 ? pick(spaces) : "")
        }
        text += pick(ends)
      }
      if let problem = agreement(text, format: format) {
        failures.append("\(text.debugDescription) [\(format)]: \(problem)")
      }
      if GroundTruthBytes.parse(Data(text.utf8), format: format, classes: tiny) != nil {
        answered += 1
      }
    }
    #expect(failures.isEmpty, "\(failures.count) disagreements, e.g. \(failures.prefix(3))")
    // Otherwise the agreement above would be about rejections only.
    #expect(answered >= 400, "the byte parser answered for only \(answered) of 2000 files")
  }

  @Test(
    "takes the fast path on the shipped and shared 50,000-image files, same labels",
    .requiresShared)
  func realFiles() throws {
    let classes = try ClassIndex.imageNet1k()
    let files: [(URL, GroundTruth.Format)] = [
      (
        try ShippedLabels.directory().appendingPathComponent(
          "ILSVRC2012_validation_ground_truth.txt"), .perLine
      ),
      (TestEnvironment.shared("labels/caffe_val.txt"), .auto),
      (TestEnvironment.shared("labels/LOC_val_solution.csv"), .auto),
    ]
    for (url, format) in files {
      let data = try Data(contentsOf: url)
      let fast = try #require(GroundTruthBytes.parse(data, format: format, classes: classes))
      let reference = try GroundTruth.load(
        text: String(decoding: data, as: UTF8.self), path: url.path, format: format,
        classes: classes)
      #expect(fast.labels.count == 50_000)
      #expect(fast.labels == reference.labels, "\(url.lastPathComponent)")
      #expect(reference.source == "\(url.path) (\(fast.format.rawValue))")
    }
  }
}
