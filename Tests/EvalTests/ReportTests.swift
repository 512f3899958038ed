import Foundation
import TestSupport
import Testing

@testable import Eval

@Suite struct ReportTests {
  /// 400 images over 20 classes: float right on 287 (71.75%), int8 on 274 (68.50%), like the
  /// FasterNet T0 row of the model zoo.
  /// With `int8AsFloat`, int8 predicts exactly what float does (no class loses anything).
  static func fasterNetSummary(int8AsFloat: Bool = false) throws -> Summary {
    var records = [ImageRecord]()
    for i in 0..<400 {
      let label = i % 20
      let wrong = (label + 1) % 20
      let floatRight = i < 287
      // int8 is right on the first 274 images except 0..<5, plus 287..<292.
      let int8Right = int8AsFloat ? floatRight : (i < 274 && i >= 5) || (i >= 287 && i < 292)
      func prediction(_ right: Bool) -> EnginePrediction {
        EnginePrediction(top5: right ? [label, wrong] : [wrong, label], scores: [0.6, 0.3])
      }
      records.append(
        ImageRecord(
          index: i, key: Fixture.key(i), label: label,
          engines: ["float": prediction(floatRight), "int8": prediction(int8Right)],
          paired: ["int8": LogitSimilarity(cosine: 0.99, kl: 0.01)]))
    }
    records.append(
      .skipped(index: 400, key: Fixture.key(400), label: 3, reason: "decode", detail: "bad"))
    var manifest = Fixture.manifest()
    manifest.model.name = "FasterNet T0"
    manifest.model.parameterCount = 3_900_000
    manifest.model.classCount = 1000
    let names = (0..<20).map { "name\($0) | piped" }
    let metrics = try Metrics.compute(
      records: records, engineNames: ["float", "int8"], classNames: names)
    return Summary(
      metrics: metrics,
      provenance: Provenance(
        run: manifest, commandLine: ["imagenet-eval", "run", "--model", "m.onnx"], wallSeconds: 10,
        samples: 401))
  }

  @Test func markdownHasTheModelZooRowAndTheWorstClasses() throws {
    let summary = try Self.fasterNetSummary()
    #expect(summary.metrics.engines["float"]?.top1 == 71.75)
    #expect(summary.metrics.engines["int8"]?.top1 == 68.5)
    let markdown = MarkdownReport.render(summary)
    #expect(
      markdown.contains(
        "| Model | Size | Categories | Parameter (M) | Floating point precision | Quantization accuracy |"
      ))
    #expect(markdown.contains("| FasterNet T0 | 224x224 | 1000 | 3.90 | 71.75 | 68.50 |"))
    #expect(markdown.contains("| Top-1 drop (points) | 3.25 |"))
    // 13 classes lost images (0..<5 two each, 5, 6 and 14..<20 one each); gains are not listed.
    #expect(markdown.contains("## The 13 classes that lost the most"))
    #expect(markdown.contains("| 0 | name0 \\| piped | 20 | 75.00 | 65.00 | 10.00 |"))
    #expect(!markdown.contains("| 7 | name7 \\| piped | 20 |"))
    // Classes 0..<5 lose image 0..<5 (one each, 20 images per class: 5 points); names are
    // escaped so the pipe does not split the cell.
    #expect(markdown.contains("| 0 | name0 \\| piped | 20 |"))
    #expect(markdown.contains("| decode | 1 |"))
    #expect(markdown.contains("imagenet-eval run --model m.onnx"))
  }

  @Test func markdownSaysSoWhenNoClassLost() throws {
    let markdown = MarkdownReport.render(try Self.fasterNetSummary(int8AsFloat: true))
    #expect(markdown.contains("| Top-1 drop (points) | 0.00 |"))
    #expect(markdown.contains("## Classes that lost accuracy\n\nNo class lost top-1 accuracy.\n"))
    // No empty table under the sentence and no "The 0 classes" heading.
    #expect(!markdown.contains("classes that lost the most"))
    #expect(!markdown.contains("| Class | Name | Images |"))
    let html = HTMLReport.render(try Self.fasterNetSummary(int8AsFloat: true))
    #expect(html.contains("<h2>Classes that lost accuracy</h2>"))
    #expect(html.contains("No class lost accuracy."))
    #expect(!html.contains("classes that lost the most"))
  }

  @Test func summaryJSONRoundTripsWithSortedKeys() throws {
    let summary = try Self.fasterNetSummary()
    let data = try summary.jsonData()
    let decoded = try JSONDecoder.canonical.decode(Summary.self, from: data)
    #expect(decoded == summary)
    let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    #expect(
      Set(object.keys) == [
        "images", "samples", "engines", "paired", "per_class", "skipped", "provenance",
      ])
    let paired = object["paired"] as! [String: Any]
    #expect(paired["mcnemar_p"] != nil && paired["top1_drop"] != nil && paired["agreement"] != nil)
    let float = (object["engines"] as! [String: Any])["float"] as! [String: Any]
    #expect((float["top1_ci95"] as! [Double]).count == 2)
    #expect(try summary.jsonData() == data)
    #expect(summary.exceedsDrop(3) && !summary.exceedsDrop(3.25))
  }

  @Test func tableCombinesModelsWithBenchColumns() throws {
    let a = try Self.fasterNetSummary()
    var b = a
    b.provenance.run.model.name = "Other Net"
    b.provenance.run.model.sha256 = "ff"
    b.provenance.run.model.inputShape = [1, 256, 256, 3]
    let bench = BenchReport(
      model: "FasterNet T0", modelSHA256: a.provenance.run.model.sha256,
      results: [
        .init(engine: "int8", batchSize: 1, imagesPerSecond: 812.25, latencyMS: 1.231),
        .init(engine: "float", batchSize: 1, imagesPerSecond: 301.04, latencyMS: 3.3219),
      ])
    let table = try AccuracyTable.render(summaries: [a, b], benches: [bench])
    let lines = table.split(separator: "\n").map(String.init)
    #expect(lines.count == 4)
    #expect(lines[0].hasSuffix("| float batch 1 img/s (ms) | int8 batch 1 img/s (ms) |"))
    #expect(
      lines[2]
        == "| FasterNet T0 | 224x224 | 1000 | 3.90 | 71.75 | 68.50 | 301.0 (3.32) | 812.2 (1.23) |")
    #expect(lines[3] == "| Other Net | 256x256 | 1000 | 3.90 | 71.75 | 68.50 | n/a | n/a |")

    let stray = BenchReport(model: "x", modelSHA256: "00", results: [])
    #expect(throws: EvalError.self) { try AccuracyTable.render(summaries: [a], benches: [stray]) }
  }

  @Test func htmlIsSelfContained() throws {
    let summary = try Self.fasterNetSummary()
    let html = HTMLReport.render(summary, layers: nil)
    #expect(html.contains("not available"))
    #expect(!html.contains("<script"))
    #expect(
      !html.contains("http://")
        || !html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains(
          "http://")
    )
    #expect(!html.contains("https://"))
    #expect(html.contains("name0 | piped"))  // text content, escaped only for markup
    let withLayers = HTMLReport.render(
      summary, layers: [LayerQuality(node: "conv<1>", sqnrDB: 31.5, cosine: 0.9991)])
    #expect(withLayers.contains("conv&lt;1&gt;"))
    #expect(!withLayers.contains("not available"))
  }

  @Test(
    .requiresPython)
  func htmlParsesAndHasFiveCharts() throws {
    let summary = try Self.fasterNetSummary()
    let layers = (0..<12).map {
      LayerQuality(node: "layer\($0)", sqnrDB: 20 + Double($0), cosine: 0.99)
    }
    let directory = try TestEnvironment.makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("report.html")
    try HTMLReport.render(summary, layers: layers).write(to: url, atomically: true, encoding: .utf8)
    // Each inline SVG must be well-formed XML on its own; count charts by their colours.
    let code = """
      import sys, re, xml.etree.ElementTree as ET
      from html.parser import HTMLParser
      text = open(sys.argv[1], encoding='utf-8').read()
      HTMLParser().feed(text)
      svgs = re.findall(r'<svg.*?</svg>', text, re.S)
      for s in svgs: ET.fromstring(s)
      print(len(svgs))
      """
    let output = try PythonReference.run(code: code, arguments: [url.path])
    #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "5")
  }
}
