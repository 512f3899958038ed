import ArgumentParser
import Dataset
import Foundation

/// The preprocessing of `--calib` images for commands that take no `--data` (`bench`,
/// `infer`): the same preset and overrides as `run`, so the int8 engine calibrates on tensors
/// like the ones it will see.
///
/// `run` embeds ``DatasetOptions`` instead, whose `--data` is required; these options build a
/// ``DatasetOptions`` over `--calib` when calibration needs one.
struct CalibrationPreprocessOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Preprocessing of the calibration images, as `run --preset` (torchvision, timm, rdk, "
        + "rdk-board, tflite, efficientnet-lite); the options below override single knobs.",
      valueName: PreprocessPreset.allCases.map(\.rawValue).joined(separator: "|")))
  var preset: String = PreprocessPreset.torchvision.rawValue

  @Option(help: ArgumentHelp("As `run --geometry`.", valueName: "name"))
  var geometry: String?

  @Option(help: ArgumentHelp("As `run --resize`.", valueName: "n"))
  var resize: String?

  @Option(help: ArgumentHelp("As `run --crop`.", valueName: "n"))
  var crop: String?

  @Option(help: ArgumentHelp("As `run --crop-pct`.", valueName: "fraction"))
  var cropPct: String?

  @Option(help: ArgumentHelp("As `run --central-fraction`.", valueName: "fraction"))
  var centralFraction: String?

  @Option(help: ArgumentHelp("As `run --letterbox-pad`.", valueName: "level"))
  var letterboxPad: String?

  @Option(help: ArgumentHelp("As `run --interpolation`.", valueName: "name"))
  var interpolation: String?

  @Option(help: ArgumentHelp("As `run --crop-rounding`.", valueName: "rule"))
  var cropRounding: String?

  @Option(
    name: [.customLong("color"), .customLong("chroma")],
    help: ArgumentHelp("As `run --color`.", valueName: "path"))
  var color: String?

  @Option(help: ArgumentHelp("As `run --mean`.", valueName: "r,g,b"))
  var mean: String?

  @Option(help: ArgumentHelp("As `run --std`.", valueName: "r,g,b"))
  var std: String?

  @Option(help: ArgumentHelp("As `run --scale`.", valueName: "r,g,b"))
  var scale: String?

  @Option(help: ArgumentHelp("As `run --tensor-layout`.", valueName: "nchw|nhwc"))
  var tensorLayout: String?

  @Flag(name: .customLong("fast-dct"), help: "As `run --fast-dct`.")
  var fastDCT = false

  @Flag(name: .customLong("fast-decode"), help: "As `run --fast-decode`.")
  var fastDecode = false

  func validate() throws {
    do {
      _ = try dataset(reading: ["calibration-images"])
    } catch let error as ValidationError {
      throw error
    } catch {
      throw ValidationError(DatasetOptions.message(for: error))
    }
  }

  /// Dataset options that read `data` with this preprocessing (layout detected, shipped
  /// ground truth). Built by parsing the equivalent `run` arguments, so every other dataset
  /// option keeps its `run` default.
  func dataset(reading data: [String]) throws -> DatasetOptions {
    var arguments = ["--data"] + data + ["--preset", preset]
    let overrides: [(String, String?)] = [
      ("--geometry", geometry), ("--resize", resize), ("--crop", crop), ("--crop-pct", cropPct),
      ("--central-fraction", centralFraction), ("--letterbox-pad", letterboxPad),
      ("--interpolation", interpolation), ("--crop-rounding", cropRounding),
      ("--color", color), ("--mean", mean), ("--std", std), ("--scale", scale),
      ("--tensor-layout", tensorLayout),
    ]
    for case (let name, let value?) in overrides { arguments += [name, value] }
    if fastDCT { arguments.append("--fast-dct") }
    if fastDecode { arguments.append("--fast-decode") }
    return try DatasetOptions.parse(arguments)
  }
}
