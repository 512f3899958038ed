import ArgumentParser

/// The `imagenet-eval` command line: every subcommand is registered here.
public struct ImagenetEval: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "imagenet-eval",
    abstract: "Measure what int8 quantization costs an ImageNet classifier, and where.",
    subcommands: []
  )

  public init() {}
}
