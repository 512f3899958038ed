#!/usr/bin/env bash
# Float engine vs onnxruntime, images/s at batch 1 and 16, same model, same batch, same thread
# count, measured in the same run: FasterNet T0/T1/T2/S (random weights, tools/make_fasternet.py,
# opset 13) and EfficientNet-Lite0 (real weights, scripts/setup-assets.sh). Run from anywhere.
#
# Environment: THREADS (default 2), SECONDS_PER_POINT (default 5), MODELS (default
# "t0 t1 t2 s lite0"), IMAGENET_EVAL_PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${IMAGENET_EVAL_PYTHON:-.venv/bin/python}
threads=${THREADS:-2}
seconds=${SECONDS_PER_POINT:-5}
models=${MODELS:-t0 t1 t2 s lite0}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The same flags as CI, so this reuses the test build instead of rebuilding everything.
swift build -c release -Xswiftc -enable-testing --product imagenet-eval > "$out/build.log" 2>&1 \
  || { tail -20 "$out/build.log"; exit 1; }
bin=.build/release/imagenet-eval

cache=.build/fasternet-cache
for m in $models; do
  case $m in
    lite0) path=models/efficientnet-lite0.onnx; label="EfficientNet-Lite0"
      [ -f "$path" ] || { echo "missing $path: run scripts/setup-assets.sh" >&2; exit 1; } ;;
    *) path=$("$python" tools/make_fasternet.py --variant "$m" --opset 13 --cache-dir "$cache" | tail -1)
      label="FasterNet-$(echo "$m" | tr a-z A-Z)" ;;
  esac
  echo "== $label ($path)" >&2
  # libgomp's default wait policy spins; with decode threads or other processes on the same
  # cores that spinning costs far more than it saves, so both policies are measured.
  env -u OMP_WAIT_POLICY "$bin" bench --model "$path" --name "$label" --batch 1,16 \
    --threads "$threads" --seconds "$seconds" --json "$out/$m-ours.json" >&2
  OMP_WAIT_POLICY=passive "$bin" bench --model "$path" --name "$label" --batch 1,16 \
    --threads "$threads" --seconds "$seconds" --json "$out/$m-passive.json" >&2
  "$python" bench/engine/ort_bench.py "$path" --threads "$threads" --batches 1,16 \
    --seconds "$seconds" --json "$out/$m-ort.json" >&2
done

"$python" - "$out" "$threads" $models <<'PY'
import json, sys
from pathlib import Path
out, threads, models = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
print("| model | batch | float img/s (default OpenMP) | float img/s (OMP_WAIT_POLICY=passive) | onnxruntime img/s | ratio default | ratio passive | float ms/batch (passive) | onnxruntime ms/batch |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in models:
    ours = json.loads((out / f"{m}-ours.json").read_text())
    ort = json.loads((out / f"{m}-ort.json").read_text())
    passive = json.loads((out / f"{m}-passive.json").read_text())
    theirs = {r["batch_size"]: r for r in ort["results"]}
    quiet = {r["batch_size"]: r for r in passive["results"]}
    for r in ours["results"]:
        t, p = theirs[r["batch_size"]], quiet[r["batch_size"]]
        print(f"| {ours['model']} | {r['batch_size']} | {r['images_per_second']:.1f} | "
              f"{p['images_per_second']:.1f} | {t['images_per_second']:.1f} | "
              f"{r['images_per_second'] / t['images_per_second']:.2f} | "
              f"{p['images_per_second'] / t['images_per_second']:.2f} | "
              f"{p['latency_ms']:.2f} | {t['latency_ms']:.2f} |")
print(f"\n{threads} threads each; ratio > 1 means the float engine is faster; ms/batch is the mean.")
PY
