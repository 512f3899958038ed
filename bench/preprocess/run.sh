#!/usr/bin/env bash
# Preprocessing benchmark: Swift vs Pillow at the torchvision preset, 1 and 2 threads, same run.
#
#   bench/preprocess/run.sh [TAR]     (default ../shared/datasets/ilsvrc2012-val-subset-1300.tar)
#
# 1. Kernels only (resize + crop + normalise on already-decoded pixels): the JPEGs are decoded
#    once by Pillow into a .npy stack, then a release-mode Swift test and pillow_peer.py time
#    the same pixels (plus a synthetic 500×375 set with typical ImageNet geometry).
# 2. Decode + preprocess end to end: pillow_peer.py full, and `imagenet-eval inspect --bench`
#    once the CLI provides it (skipped with a note until then).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tar="${1:-$root/../shared/datasets/ilsvrc2012-val-subset-1300.tar}"
python="${IMAGENET_EVAL_PYTHON:-$root/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$root"
echo "== decoding $tar into a pixel stack (Pillow)"
"$python" bench/preprocess/pillow_peer.py stack "$tar" "$work/stack.npy"

echo "== kernels: Swift (release) vs Pillow"
swift build -c release -Xswiftc -enable-testing --build-tests >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; exit 1; }
IMAGENET_EVAL_BENCH=1 IMAGENET_EVAL_BENCH_STACK="$work/stack.npy" \
  swift test -c release -Xswiftc -enable-testing --skip-build \
  --filter PreprocessBenchmarkTests 2>&1 | grep -E "^(swift kernel|  \[|ratio)" || true

echo "== decode + preprocess end to end"
"$python" bench/preprocess/pillow_peer.py full "$tar"
bin="$(swift build -c release --show-bin-path)/imagenet-eval"
if [ -x "$bin" ] && "$bin" inspect --help 2>/dev/null | grep -q -- "--bench"; then
  for threads in 1 2; do
    "$bin" inspect --bench --preset torchvision --threads "$threads" "$tar"
  done
else
  echo "imagenet-eval inspect --bench not available yet: Swift end-to-end numbers skipped"
fi
