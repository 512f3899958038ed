import Foundation
import TestSupport
import Testing

@testable import Dataset

private func write(_ text: String, named name: String = "labels.txt") throws -> URL {
  let directory = try TestEnvironment.makeTemporaryDirectory("labels")
  let url = directory.appendingPathComponent(name)
  try text.write(to: url, atomically: true, encoding: .utf8)
  return url
}

/// Three classes are enough to exercise every parser branch.
private let tiny = try! ClassIndex(synsets: ["n01440764", "n01443537", "n01484850"])

@Suite("Labels")
struct LabelTests {
  @Test("shipped ImageNet-1k classes: 1000 sorted distinct synsets with names")
  func shippedClasses() throws {
    let classes = try ClassIndex.imageNet1k()
    #expect(classes.count == 1000)
    #expect(classes.synsets == classes.synsets.sorted())
    #expect(classes.synsets.first == "n01440764")
    #expect(classes.names.first == "tench, Tinca tinca")
    #expect(classes.index(ofSynset: "n15075141") == 999)
    #expect(classes.index(ofSynset: "n99999999") == nil)
  }

  @Test(
    "shipped validation ground truth agrees with Caffe val.txt on all 50,000 images",
    .requiresShared)
  func shippedGroundTruthMatchesCaffe() throws {
    let classes = try ClassIndex.imageNet1k()
    let shipped = try GroundTruth.imageNetValidation(classes: classes)
    let caffe = try GroundTruth.load(
      contentsOf: TestEnvironment.shared("labels/caffe_val.txt"), classes: classes)
    #expect(shipped.count == 50_000)
    #expect(caffe.count == 50_000)
    #expect(caffe.source.hasSuffix("(caffe)"))
    let disagreements = shipped.labels.filter { caffe.labels[$0.key] != $0.value }
    #expect(
      disagreements.isEmpty,
      "\(disagreements.count) disagree, e.g. \(disagreements.first.map { "\($0)" } ?? "")")
    #expect(shipped.label(forKey: "ILSVRC2012_val_00000001") == 65)
  }

  @Test(
    "shipped names match Caffe synset_words.txt and Kaggle LOC_val_solution.csv agrees",
    .requiresShared)
  func sharedFiles() throws {
    let classes = try ClassIndex.imageNet1k()
    let words = try ClassIndex.load(synsetsFile: TestEnvironment.shared("labels/synset_words.txt"))
    #expect(words.synsets == classes.synsets)
    #expect(words.names == classes.names)
    let kaggle = try GroundTruth.load(
      contentsOf: TestEnvironment.shared("labels/LOC_val_solution.csv"), classes: classes)
    let shipped = try GroundTruth.imageNetValidation(classes: classes)
    #expect(kaggle.source.hasSuffix("(kaggleCSV)"))
    #expect(kaggle.count == 50_000)
    #expect(kaggle.labels == shipped.labels)
  }

  @Test("each format parses, with auto-detection, CRLF and trailing boxes")
  func formats() throws {
    let caffe = try GroundTruth.load(
      contentsOf: write("ILSVRC2012_val_00000001.JPEG 2\r\nILSVRC2012_val_00000002.JPEG 0\r\n"),
      classes: tiny)
    #expect(caffe.labels == ["ILSVRC2012_val_00000001": 2, "ILSVRC2012_val_00000002": 0])
    let kaggle = try GroundTruth.load(
      contentsOf: write(
        "ImageId,PredictionString\nILSVRC2012_val_00000002,n01443537 1 2 3 4 n01443537 5 6 7 8\n"
          + "ILSVRC2012_val_00000001,n01484850\n"),
      classes: tiny)
    #expect(kaggle.labels == ["ILSVRC2012_val_00000001": 2, "ILSVRC2012_val_00000002": 1])
    let synsetLines = try GroundTruth.load(
      contentsOf: write("n01484850\nn01440764\n\n"), classes: tiny)
    #expect(synsetLines.labels == ["ILSVRC2012_val_00000001": 2, "ILSVRC2012_val_00000002": 0])
    let indexLines = try GroundTruth.load(
      contentsOf: write("1\n2\n0\n"), format: .perLine, classes: tiny)
    #expect(indexLines.labels["ILSVRC2012_val_00000003"] == 0)
    #expect(indexLines.label(forKey: "val/ILSVRC2012_val_00000002.JPEG") == 2)
  }

  @Test("malformed ground truth fails naming file and line")
  func errors() throws {
    func message(_ text: String, format: GroundTruth.Format = .auto) -> String? {
      guard let url = try? write(text) else { return "fixture" }
      do {
        _ = try GroundTruth.load(contentsOf: url, format: format, classes: tiny)
        return nil
      } catch {
        return "\(error)".replacingOccurrences(of: url.path, with: "FILE")
      }
    }
    #expect(
      message("a.JPEG 1\nb.JPEG 2\na.JPEG 0\n")
        == "FILE:3: duplicate label for a (first on line 1)")
    #expect(message("n01440764\nn09999999\n") == "FILE:2: unknown synset n09999999")
    #expect(message("a.JPEG 1\nb.JPEG 3\n") == "FILE:2: class index 3 outside 0..<3")
    #expect(
      message("a.JPEG 1\nb.JPEG\n") == "FILE:2: expected `file-name class-index`, found 1 fields")
    #expect(
      message("ImageId,PredictionString\nx,n01440764\nx,n01443537\n")
        == "FILE:3: duplicate label for x (first on line 2)")
    #expect(
      message("ImageId,PredictionString\nx\n") == "FILE:2: expected `ImageId,synset [boxes…]`")
    #expect(message("") == "FILE: no labels in the file")
    #expect(message("a b c\n")?.hasPrefix("FILE:1: unrecognised ground-truth format") == true)
    #expect(
      message("1\n2 3\n", format: .perLine)
        == "FILE:2: expected one synset or class index per line, found 2 fields")
  }

  @Test("unreadable label file and bad class lists are clear errors")
  func unreadableAndClasses() throws {
    let missing = URL(fileURLWithPath: "/nonexistent/val.txt")
    #expect(throws: DatasetError.self) { try GroundTruth.load(contentsOf: missing, classes: tiny) }
    do {
      _ = try GroundTruth.load(contentsOf: missing, classes: tiny)
    } catch {
      #expect("\(error)".hasPrefix("cannot read /nonexistent/val.txt"))
    }
    #expect(
      throws: DatasetError.labelFile(
        path: "<memory>", line: 2, message: "duplicate synset n01440764 (first on line 1)")
    ) {
      try ClassIndex(synsets: ["n01440764", "n01440764"])
    }
    let badFile = try write("n01440764 tench\nfish\n")
    #expect(
      throws: DatasetError.labelFile(
        path: badFile.path, line: 2, message: "expected a synset like n01440764, found fish")
    ) { try ClassIndex.load(synsetsFile: badFile) }
  }
}
