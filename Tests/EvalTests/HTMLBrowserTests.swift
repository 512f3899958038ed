import Foundation
import TestSupport
import Testing

@testable import Eval

/// Renders `report.html` in a real headless browser and checks the screenshot: the charts
/// must actually be drawn, in document order, not merely present in the markup.
@Suite struct HTMLBrowserTests {
  static let chromium: String? = [
    "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
  ]
  .first { FileManager.default.isExecutableFile(atPath: $0) }

  static var browserAvailable: Bool { chromium != nil || TestEnvironment.isCI }

  @Test(
    .enabled(
      if: browserAvailable && TestEnvironment.pythonAvailable,
      "skipped: needs Debian's chromium (apt-get install chromium) and the reference venv"))
  func chartsRenderInHeadlessChromium() throws {
    let chromium = try #require(Self.chromium, "chromium is required in CI")
    let summary = try ReportTests.fasterNetSummary()
    let layers = (0..<12).map {
      LayerQuality(
        node: "stage\($0 / 4).block\($0 % 4).conv", sqnrDB: 18 + 1.5 * Double($0), cosine: 0.995)
    }
    let directory = try TestEnvironment.makeTemporaryDirectory("imagenet-eval-html")
    defer { try? FileManager.default.removeItem(at: directory) }
    let page = directory.appendingPathComponent(HTMLReport.fileName)
    try HTMLReport.render(summary, layers: layers).write(
      to: page, atomically: true, encoding: .utf8)
    let screenshot = directory.appendingPathComponent("screenshot.png")

    let process = Process()
    process.executableURL = URL(fileURLWithPath: chromium)
    process.arguments = [
      "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
      "--user-data-dir=\(directory.appendingPathComponent("profile").path)",
      "--screenshot=\(screenshot.path)", "--window-size=1200,3000", page.absoluteString,
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    // A wedged browser must fail the test, not hang the suite.
    let deadline = Date().addingTimeInterval(120)
    while process.isRunning && Date() < deadline { usleep(100_000) }
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
    #expect(FileManager.default.fileExists(atPath: screenshot.path), "chromium wrote no screenshot")
    if let keep = ProcessInfo.processInfo.environment["IMAGENET_EVAL_KEEP_SCREENSHOT"] {
      try? FileManager.default.removeItem(atPath: keep)
      try FileManager.default.copyItem(atPath: screenshot.path, toPath: keep)
    }

    // Count the pixels of each chart colour and where they sit on the page.
    let code = """
      import json, sys
      import numpy as np
      from PIL import Image
      a = np.asarray(Image.open(sys.argv[1]).convert('RGB')).astype(int)
      out = {'height': a.shape[0], 'width': a.shape[1],
             'nonwhite': float((a.sum(axis=2) < 740).mean())}
      for name, hexcolor in json.loads(sys.argv[2]).items():
          rgb = [int(hexcolor[i:i + 2], 16) for i in (1, 3, 5)]
          m = np.all(np.abs(a - rgb) <= 4, axis=2)
          ys = np.nonzero(m)[0]
          out[name] = {'pixels': int(m.sum()), 'top': int(ys.min()) if len(ys) else -1,
                       'bottom': int(ys.max()) if len(ys) else -1}
      print(json.dumps(out))
      """
    let palette = [
      "histogram": HTMLReport.Palette.histogram, "worst": HTMLReport.Palette.worst,
      "lost": HTMLReport.Palette.lost, "gained": HTMLReport.Palette.gained,
      "confusion": HTMLReport.Palette.confusion, "sqnr": HTMLReport.Palette.sqnr,
    ]
    let paletteJSON = String(
      decoding: try JSONSerialization.data(withJSONObject: palette), as: UTF8.self)
    let output = try PythonReference.run(code: code, arguments: [screenshot.path, paletteJSON])
    let result = try #require(
      try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
    #expect(result["width"] as? Int == 1200)
    let nonWhite = try #require(result["nonwhite"] as? Double)
    #expect(nonWhite > 0.02, "page looks blank: \(nonWhite) non-white")
    func region(_ name: String) throws -> (pixels: Int, top: Int, bottom: Int) {
      let entry = try #require(result[name] as? [String: Int], "\(name)")
      return (entry["pixels"] ?? 0, entry["top"] ?? -1, entry["bottom"] ?? -1)
    }
    let order = ["histogram", "worst", "lost", "confusion", "sqnr"]
    var previousBottom = -1
    for name in order {
      let r = try region(name)
      // Every chart draws solid bars: hundreds of pixels at the very least.
      #expect(r.pixels > 400, "\(name) chart: only \(r.pixels) pixels of its colour")
      #expect(r.top > previousBottom, "\(name) chart is not below the previous chart")
      previousBottom = r.bottom
    }
    let gained = try region("gained")
    let lost = try region("lost")
    #expect(gained.pixels > 100 && gained.top > lost.top)
  }
}
