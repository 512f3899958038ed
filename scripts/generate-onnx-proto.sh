#!/usr/bin/env bash
# Regenerates Sources/Model/ONNX/onnx.pb.swift from the onnx.proto shipped in the pinned
# `onnx` wheel (scripts/requirements.txt), with protoc (Debian: protobuf-compiler) and the
# protoc-gen-swift plugin of the swift-protobuf version this package depends on.
# Run it once after changing either version; the output is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "needs protoc: apt-get install protobuf-compiler" >&2; exit 1; }
scripts/setup-python.sh
proto_dir=$(.venv/bin/python -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q --depth 1 --branch 1.39.0 https://github.com/apple/swift-protobuf "$work/swift-protobuf"
swift build -c release --package-path "$work/swift-protobuf" --product protoc-gen-swift >&2
cp "$proto_dir/onnx.proto" "$work/onnx.proto"
protoc --plugin="$work/swift-protobuf/.build/release/protoc-gen-swift" \
  --swift_opt=Visibility=Internal --swift_out=Sources/Model/ONNX -I "$work" "$work/onnx.proto"
echo "wrote Sources/Model/ONNX/onnx.pb.swift" >&2
