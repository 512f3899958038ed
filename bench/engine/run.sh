#!/usr/bin/env bash
# Float engine vs onnxruntime on a FasterNet-T0-shaped model (random weights, 224x224, 1000
# classes) at batch 1 and 16, two threads each. Run from the package root.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${IMAGENET_EVAL_PYTHON:-.venv/bin/python}
model=${1:-/tmp/imagenet-eval-bench-fasternet-t0.onnx}
threads=${THREADS:-2}
if [ ! -f "$model" ]; then
  "$python" scripts/reference/dnnl_make_test_model.py fasternet_t0 "$model" --size 224 --classes 1000
fi
"$python" bench/engine/ort_bench.py "$model" --threads "$threads"
swift build -c release -Xswiftc -enable-testing --build-tests > /tmp/imagenet-eval-bench-build.log 2>&1 \
  || { tail -20 /tmp/imagenet-eval-bench-build.log; exit 1; }
IMAGENET_EVAL_BENCH_MODEL="$model" IMAGENET_EVAL_BENCH_THREADS="$threads" \
  swift test -c release -Xswiftc -enable-testing --skip-build --filter FloatEngineBenchmark 2>&1 \
  | grep -E "float engine threads|passed|failed|error"
