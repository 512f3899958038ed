// swift-tools-version:6.0
import PackageDescription

// The data flows Dataset -> Model -> Eval; each module sees only the ones below it.
let package = Package(
  name: "imagenet-eval",
  products: [
    .executable(name: "imagenet-eval", targets: ["imagenet-eval"]),
    .library(name: "Dataset", targets: ["Dataset"]),
    .library(name: "Model", targets: ["Model"]),
    .library(name: "Eval", targets: ["Eval"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
  ],
  targets: [
    .systemLibrary(
      name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
    .systemLibrary(
      name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
    // Debian's libdnnl-dev ships no pkg-config file; the module map links -ldnnl.
    .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
    .target(
      name: "Dataset",
      dependencies: ["CTurboJPEG", "CArchive"]),
    .target(name: "CInt8Kernels"),
    .target(name: "CFloatKernels"),
    .target(
      name: "Model",
      dependencies: [
        "CDNNL", "CInt8Kernels", "CFloatKernels",
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ]),
    .target(
      name: "Eval",
      dependencies: [
        "Dataset", "Model", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Yams", package: "Yams"),
      ]),
    .executableTarget(name: "imagenet-eval", dependencies: ["Eval"]),
    .target(
      name: "TestSupport", dependencies: ["CTurboJPEG", "CArchive"], path: "Tests/TestSupport"),
    .testTarget(name: "DatasetTests", dependencies: ["Dataset", "TestSupport"]),
    .testTarget(name: "ModelTests", dependencies: ["Model", "Dataset", "TestSupport"]),
    .testTarget(name: "EvalTests", dependencies: ["Eval", "Model", "Dataset", "TestSupport"]),
  ],
  swiftLanguageModes: [.v5]
)
