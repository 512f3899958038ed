import Dataset
import Foundation
import TestSupport
import Testing

@testable import Eval

/// `inspect` and the shared dataset options, run in-process through the real argument parser.
@Suite struct InspectTests {
  /// Parses a full command line and runs the inspection, returning the report.
  static func inspect(_ arguments: [String]) throws -> InspectReport {
    let parsed = try ImagenetEval.parseAsRoot(["inspect"] + arguments)
    let command = try #require(parsed as? InspectCommand)
    return try command.inspect()
  }

  /// The parser's message for a command line that must be rejected before running.
  static func usageMessage(_ arguments: [String]) -> String? {
    do {
      _ = try ImagenetEval.parseAsRoot(["inspect"] + arguments)
      return nil
    } catch {
      return ImagenetEval.fullMessage(for: error)
    }
  }

  /// Synsets of validation images 1…`count` from the shipped ground truth, read independently
  /// of the Dataset module.
  static func shippedSynsets(_ count: Int) throws -> [String] {
    let url = TestEnvironment.packageRoot.appendingPathComponent(
      "labels/ILSVRC2012_validation_ground_truth.txt")
    let lines = try String(contentsOf: url, encoding: .utf8).split(whereSeparator: \.isNewline)
    return lines.prefix(count).map(String.init)
  }

  static func valName(_ number: Int) -> String {
    String(format: "ILSVRC2012_val_%08d.JPEG", number)
  }

  /// A flat tar: `good` JPEGs of varied sizes, one PNG, one empty image, one README.
  static func writeFlatTar(at url: URL, good: Int) throws {
    let sizes = [(300, 200), (227, 227), (500, 375), (199, 311), (256, 256), (640, 480)]
    var members: [(name: String, bytes: [UInt8])] = []
    for number in 1...good {
      let (width, height) = sizes[(number - 1) % sizes.count]
      members.append(
        (
          "val/" + valName(number),
          Fixtures.jpeg(width: width, height: height, seed: UInt32(number))
        ))
    }
    members.append(("val/" + valName(good + 1), Fixtures.pngBytes))
    members.append(("val/" + valName(good + 2), []))
    members.append(("val/README.txt", Array("not an image".utf8)))
    try Fixtures.writeTar(at: url, members: members)
  }

  @Test func flatTarCountsSkipsAndIgnoredMembers() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let tar = root.appendingPathComponent("val.tar")
    try Self.writeFlatTar(at: tar, good: 7)

    let report = try Self.inspect(["--data", tar.path, "--workers", "2"])
    #expect(report.layout == "flat")
    #expect(report.samples == 9)
    #expect(report.images == 7)
    #expect(report.skipped == 2)
    #expect(report.classesPresent == Set(try Self.shippedSynsets(7)).count)
    #expect(report.classCount == 1000)
    #expect(report.labelSource.contains("ILSVRC2012_validation_ground_truth"))
    #expect(report.ignoredMemberCount == 1)
    #expect(report.ignoredMembers.first?.contains("README.txt") == true)
    let reasons = Dictionary(
      uniqueKeysWithValues: report.skipReasons.map { ($0.reason, $0.count) })
    #expect(reasons == ["not a JPEG": 1, "empty member (0 bytes)": 1])
    let notJPEG = try #require(report.skipReasons.first { $0.reason == "not a JPEG" })
    #expect(notJPEG.examples == ["\(tar.path):val/\(Self.valName(8)): not a JPEG: PNG data"])
    #expect(report.text.contains("images:          7 of 9 read (2 skipped)"))

    // The same data, once per worker count and through the JSON form, gives the same report.
    let single = try Self.inspect(["--data", tar.path, "--workers", "1"])
    #expect(single.images == report.images && single.skipReasons == report.skipReasons)
    let decoded = try JSONDecoder().decode(
      InspectReport.self, from: JSONEncoder().encode(report))
    #expect(decoded == report)
  }

  @Test func labelsFileLimitShardAndClassSelection() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let tar = root.appendingPathComponent("val.tar")
    try Self.writeFlatTar(at: tar, good: 6)
    // A Caffe ground truth that puts images 1-3 in class 5 and 4-6 in class 7.
    let labels = root.appendingPathComponent("val.txt")
    let lines = (1...6).map { "\(Self.valName($0)) \($0 <= 3 ? 5 : 7)" }
    try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: labels)

    let all = try Self.inspect(["--data", tar.path, "--labels", labels.path])
    #expect(all.images == 6)
    #expect(all.classesPresent == 2)
    #expect(all.labelSource.contains(labels.path))

    let synsets = try ClassIndex.imageNet1k().synsets
    let selected = try Self.inspect([
      "--data", tar.path, "--labels", labels.path, "--label-format", "caffe", "--classes",
      synsets[7],
    ])
    #expect(selected.images == 3)
    #expect(selected.classesPresent == 1)
    #expect(selected.selectedClasses == 1)
    // The PNG and the empty member have no label in this file: kept as skips, not filtered.
    #expect(selected.skipped == 2)

    let classFile = root.appendingPathComponent("classes.txt")
    try Data("\(synsets[5]) tench-like name\n# comment\n7\n".utf8).write(to: classFile)
    let fromFile = try Self.inspect([
      "--data", tar.path, "--labels", labels.path, "--classes", "@\(classFile.path)",
    ])
    #expect(fromFile.images == 6 && fromFile.selectedClasses == 2)

    let limited = try Self.inspect(["--data", tar.path, "--labels", labels.path, "--limit", "4"])
    #expect(limited.samples == 4 && limited.images == 4)

    // Shard 1/2 of 8 samples: images 2, 4, 6 and the empty member (position 7), which this
    // label file does not label.
    let shard = try Self.inspect([
      "--data", tar.path, "--labels", labels.path, "--shard", "1/2",
    ])
    #expect(shard.samples == 4)
    #expect(shard.images == 3)
    #expect(shard.skipReasons.map(\.reason) == ["label missing"])

    // Label offset: 1001-class models shift every label by one.
    let dump = root.appendingPathComponent("dump")
    _ = try Self.inspect([
      "--data", tar.path, "--labels", labels.path, "--label-offset", "1", "--dump", "1",
      "--dump-dir", dump.path,
    ])
    let index = try JSONDecoder().decode(
      InspectReport.DumpIndex.self,
      from: Data(contentsOf: dump.appendingPathComponent("index.json")))
    #expect(index.images.map(\.label) == [6])
    #expect(index.images.map(\.synset) == [synsets[5]])
    #expect(index.labelOffset == 1)
  }

  @Test func classFolderDirectory() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let synsets = try ClassIndex.imageNet1k().synsets
    let files: [(name: String, bytes: [UInt8])] = [
      ("\(synsets[0])/a.JPEG", Fixtures.jpeg(width: 260, height: 240, seed: 1)),
      ("\(synsets[0])/b.jpg", Fixtures.jpeg(width: 240, height: 260, seed: 2)),
      ("\(synsets[999])/c.jpeg", Fixtures.jpeg(width: 230, height: 230, kind: .gray, seed: 3)),
      ("notes/d.JPEG", Fixtures.jpeg(width: 230, height: 230, seed: 4)),
    ]
    let data = root.appendingPathComponent("val")
    try Fixtures.writeDirectory(at: data, files: files)

    let report = try Self.inspect(["--data", data.path, "--preset", "timm"])
    #expect(report.layout == "class-folder")
    #expect(report.labelSource == "class folder names")
    #expect(report.images == 3)
    #expect(report.classesPresent == 2)
    #expect(report.skipReasons.map(\.reason) == ["label missing"])
    #expect(report.preprocess.interpolation == .pillowBicubic)

    let forced = try Self.inspect([
      "--data", data.path, "--layout", "class-folder", "--classes", "999",
    ])
    #expect(forced.images == 1)
    #expect(forced.classesPresent == 1)
    // The unlabelled image is not filtered away, so --strict stops on it.
    #expect {
      _ = try Self.inspect([
        "--data", data.path, "--layout", "class-folder", "--classes", "999", "--strict",
      ])
    } throws: { error in
      (error as? EvalError)?.kind == .input && "\(error)".contains("notes/d.JPEG")
    }
  }

  @Test func overridesMapOntoThePreprocessConfig() throws {
    let parsed = try ImagenetEval.parseAsRoot([
      "inspect", "--data", "x.tar", "--preset", "rdk", "--resize", "288", "--crop", "256",
      "--interpolation", "cv-area", "--chroma", "nv12-video->bgr", "--mean", "1,2,3", "--scale",
      "0.5", "--tensor-layout", "nhwc", "--fast-dct", "--fast-decode", "--workers", "3",
    ])
    let command = try #require(parsed as? InspectCommand)
    let config = try command.dataset.preprocessConfig()
    var expected = PreprocessPreset.rdk.config
    expected.resizeSize = 288
    expected.cropSize = 256
    expected.interpolation = .cvArea
    expected.chroma = .nv12Video
    expected.channels = .bgr
    expected.mean = [1, 2, 3]
    expected.scale = [0.5, 0.5, 0.5]
    expected.layout = .nhwc
    #expect(config == expected)
    #expect(command.dataset.decoderOptions == JPEGDecoder.Options(fastDCT: true, fastDecode: true))

    let timm = try #require(
      try ImagenetEval.parseAsRoot([
        "inspect", "--data", "x.tar", "--preset", "timm", "--crop-pct", "0.95", "--resize", "300",
        "--std", "2",
      ]) as? InspectCommand)
    let timmConfig = try timm.dataset.preprocessConfig()
    #expect(timmConfig.cropPct == 0.95)
    #expect(timmConfig.effectiveResizeSize == 235)
    #expect(timmConfig.std == [2, 2, 2] && timmConfig.scale == nil)
  }

  @Test func badInputGivesClearErrors() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let tar = root.appendingPathComponent("val.tar")
    try Self.writeFlatTar(at: tar, good: 1)

    let usage: [([String], String)] = [
      (["--data", tar.path, "--shard", "2/2"], "the index must be below the count"),
      (["--data", tar.path, "--shard", "x"], "expected INDEX/COUNT"),
      (["--data", tar.path, "--preset", "caffe"], "unknown preset 'caffe'"),
      (["--data", tar.path, "--std", "0"], "std needs 3 finite non-zero values"),
      (["--data", tar.path, "--std", "1", "--scale", "1"], "not both"),
      (["--data", tar.path, "--crop", "300"], "larger than the resize size"),
      (["--data", tar.path, "--mean", "1,2"], "expected 1 or 3 comma-separated numbers"),
      (["--data", tar.path, "--interpolation", "lanczos"], "expected one of pillow-bilinear"),
      (["--data", tar.path, "--workers", "0"], "--workers must be at least 1"),
      (["--data", tar.path, "--classes", "1,,2"], "empty entry"),
      (["--data", tar.path, "--classes", "tench"], "neither a class index nor a synset"),
      (["--data", tar.path, "--dump", "2"], "--dump needs --dump-dir"),
      (["--data", tar.path, "--label-format", "caffe"], "--label-format needs --labels"),
      (["--data", "val-{1..}.tar"], "bad range"),
      (["--preset", "timm"], "--data is required"),
      (["--data", tar.path, "--layout", "folders"], "folders"),
    ]
    for (arguments, fragment) in usage {
      let message = Self.usageMessage(arguments)
      #expect(message?.contains(fragment) == true, "\(arguments): \(message ?? "accepted")")
      #expect(ImagenetEval.exitStatus(arguments: ["inspect"] + arguments) == 1)
    }

    let missing = root.appendingPathComponent("nope.tar").path
    let runtime: [([String], String)] = [
      (["--data", missing], "\(missing) does not exist"),
      (["--data", tar.path, "--classes", "1000"], "class index 1000 is outside 0..<1000"),
      (["--data", tar.path, "--classes", "n99999999"], "synset n99999999 is not one of"),
      (
        ["--data", tar.path, "--labels", root.appendingPathComponent("none.txt").path],
        "none.txt"
      ),
    ]
    for (arguments, fragment) in runtime {
      #expect {
        _ = try Self.inspect(arguments)
      } throws: { error in
        (error as? EvalError)?.kind == .input && "\(error)".contains(fragment)
      }
      #expect(ImagenetEval.exitStatus(arguments: ["inspect"] + arguments) == 1)
    }

    // A broken ground truth names the file and line.
    let badLabels = root.appendingPathComponent("bad.txt")
    try Data("\(Self.valName(1)) 1\n\(Self.valName(2)) 1000\n".utf8).write(to: badLabels)
    #expect {
      _ = try Self.inspect(["--data", tar.path, "--labels", badLabels.path])
    } throws: { error in
      "\(error)".contains("\(badLabels.path):2")
    }

    // --strict turns the first skip into an input error naming the member.
    let tarWithSkips = root.appendingPathComponent("skips.tar")
    try Self.writeFlatTar(at: tarWithSkips, good: 2)
    #expect {
      _ = try Self.inspect(["--data", tarWithSkips.path, "--strict"])
    } throws: { error in
      (error as? EvalError)?.kind == .input && "\(error)".contains(Self.valName(3))
        && "\(error)".contains("not a JPEG")
    }
    // A truncated archive is an input error that names the archive.
    let truncated = root.appendingPathComponent("truncated.tar")
    let whole = try Data(contentsOf: tarWithSkips)
    try whole.prefix(whole.count / 2 + 100).write(to: truncated)
    #expect {
      _ = try Self.inspect(["--data", truncated.path])
    } throws: { error in
      (error as? EvalError)?.kind == .input && "\(error)".contains(truncated.path)
    }
  }

  /// Compares dumped tensors with the independent Python pipeline: Pillow decode plus
  /// `scripts/reference/preprocess_reference.py`. Returns the number of images compared and the
  /// worst difference in grey levels (before normalisation).
  static func compareDump(archive: URL, dump: URL) throws -> (count: Int, worstGrey: Double) {
    let code = """
      import io, json, os, re, sys, tarfile
      import numpy as np
      from PIL import Image
      root, archive, dump = sys.argv[1:4]
      sys.path.insert(0, os.path.join(root, "scripts", "reference"))
      import preprocess_reference as ref
      index = json.load(open(os.path.join(dump, "index.json")))
      cfg = index["preprocess"]
      truth = open(os.path.join(root, "labels", "ILSVRC2012_validation_ground_truth.txt")).read().split()
      wanted = {entry["key"] for entry in index["images"]}
      members = {}
      with tarfile.open(archive) as tf:
          for m in tf:
              key = os.path.splitext(m.name)[0]
              if m.isfile() and key in wanted:
                  members[key] = tf.extractfile(m).read()
      factor = np.array(cfg["scale"] if cfg.get("scale") is not None else [1 / s for s in cfg["std"]])
      factor = factor.reshape(3, 1, 1) if cfg["layout"] == "nchw" else factor.reshape(1, 1, 3)
      worst = 0.0
      for entry in index["images"]:
          number = int(re.search(r"ILSVRC2012_val_(\\d+)", entry["key"]).group(1))
          assert entry["synset"] == truth[number - 1], (entry, truth[number - 1])
          rgb = np.asarray(Image.open(io.BytesIO(members[entry["key"]])).convert("RGB"))
          _, expected = ref.pipeline(rgb, cfg)
          ours = np.load(os.path.join(dump, entry["file"]))
          assert ours.dtype == np.float32, ours.dtype
          assert list(ours.shape) == list(expected.shape) == index["shape"], (ours.shape, expected.shape)
          grey = np.abs(ours.astype(np.float64) - expected.astype(np.float64)) / np.abs(factor)
          worst = max(worst, float(grey.max()))
      print(json.dumps({"count": len(index["images"]), "worst": worst}))
      """
    let output = try PythonReference.run(
      code: code, arguments: [TestEnvironment.packageRoot.path, archive.path, dump.path])
    struct Result: Decodable {
      var count: Int
      var worst: Double
    }
    let result = try JSONDecoder().decode(Result.self, from: Data(output.utf8))
    return (result.count, result.worst)
  }

  @Test(
    .requiresPython)
  func dumpMatchesPythonReferenceOnFixtures() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let tar = root.appendingPathComponent("val.tar")
    try Self.writeFlatTar(at: tar, good: 6)
    for (arguments, name) in [
      (["--preset", "torchvision"], "torchvision"),
      (["--preset", "rdk", "--tensor-layout", "nhwc"], "rdk-nhwc"),
      (["--preset", "tflite", "--color", "bgr"], "tflite-bgr"),
    ] {
      let dump = root.appendingPathComponent(name)
      let report = try Self.inspect(
        ["--data", tar.path, "--dump", "4", "--dump-dir", dump.path] + arguments)
      #expect(report.dumped == 4)
      let files = try FileManager.default.contentsOfDirectory(atPath: dump.path).sorted()
      #expect(
        files == [
          "00000_val_ILSVRC2012_val_00000001.npy", "00001_val_ILSVRC2012_val_00000002.npy",
          "00002_val_ILSVRC2012_val_00000003.npy", "00003_val_ILSVRC2012_val_00000004.npy",
          "index.json",
        ])
      let result = try Self.compareDump(archive: tar, dump: dump)
      #expect(result.count == 4)
      #expect(
        result.worstGrey <= 1.0001, "\(name): worst difference \(result.worstGrey) grey levels")
    }
  }

  static let subset = TestEnvironment.shared("datasets/ilsvrc2012-val-subset-1300.tar")

  @Test(
    .requiresShared)
  func sharedSubsetWithEveryLabelSource() throws {
    let report = try Self.inspect(["--data", Self.subset.path])
    #expect(report.layout == "flat")
    #expect(report.samples == 1300)
    #expect(report.images == 1300)
    #expect(report.skipped == 0)
    #expect(report.classesPresent == 725)
    #expect(report.labelSource.contains("ILSVRC2012_validation_ground_truth"))
    // 1300 images are many batches, so a steady-state rate exists (its value is for bench/).
    #expect(report.steadyImagesPerSecond != nil)

    // The two published label files agree with the shipped ground truth on these images.
    for (file, format) in [("caffe_val.txt", "caffe"), ("LOC_val_solution.csv", "auto")] {
      let labels = TestEnvironment.shared("labels/" + file)
      let other = try Self.inspect([
        "--data", Self.subset.path, "--labels", labels.path, "--label-format", format,
      ])
      #expect(other.images == 1300)
      #expect(other.classesPresent == 725)
      #expect(other.labelSource.contains(file))
    }
  }

  @Test(
    .requiresShared,
    .requiresPython)
  func sharedSubsetDumpMatchesPillow() throws {
    let root = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: root) }
    let dump = root.appendingPathComponent("dump")
    let report = try Self.inspect([
      "--data", Self.subset.path, "--limit", "16", "--dump", "4", "--dump-dir", dump.path,
    ])
    #expect(report.images == 16)
    let result = try Self.compareDump(archive: Self.subset, dump: dump)
    #expect(result.count == 4)
    #expect(result.worstGrey <= 1.0001, "worst difference \(result.worstGrey) grey levels")
  }
}
