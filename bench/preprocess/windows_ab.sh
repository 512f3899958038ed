#!/usr/bin/env bash
# Same-process A/B of the preprocessing fast paths (see windows_ab.swift): compiles the Dataset
# sources plus the harness with swiftc -O (no SwiftPM build needed), extracts the shared tar
# and prints img/s for windows vs per-length resampling (torchvision and efficientnet-lite
# presets; the real 227x227 images, which upscale to 256, and 120 synthetic 500x375-class
# images, which downscale) with a count of tensors that differ (must be 0), then the
# ground-truth parse times. REPEATS (default 3) keeps the best of each.
set -euo pipefail
cd "$(dirname "$0")/../.."
shared=${SHARED:-../shared}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/jpegs"
tar -xf "$shared/datasets/ilsvrc2012-val-subset-1300.tar" -C "$work/jpegs"
# Top-level code must live in a file named main.swift.
cp bench/preprocess/windows_ab.swift "$work/main.swift"
swiftc -O -wmo -module-name Dataset -I Sources/CTurboJPEG -I Sources/CArchive \
  $(find Sources/Dataset -name '*.swift') "$work/main.swift" \
  -o "$work/windows_ab" -lturbojpeg -larchive
echo "load: $(uptime)"
"$work/windows_ab" "${REPEATS:-3}" "$work/jpegs" "$PWD" "$(cd "$shared" && pwd)"
echo "load: $(uptime)"
