#!/usr/bin/env bash
# Float and int8 engines vs onnxruntime, images/s at batch 1 and 16, same model, same batch,
# same thread count, measured in the same run: FasterNet T0/T1/T2/S (random weights,
# tools/make_fasternet.py, opset 13) and EfficientNet-Lite0 (real weights,
# scripts/setup-assets.sh). Run from anywhere.
#
# int8: our engine calibrates on the first CALIB_COUNT images of CALIB (the model's preset);
# onnxruntime runs the QDQ model that quantize_static makes from the same float model and the
# same preprocessed tensors (bench/engine/ort_quantize.py: s8 per-channel weights, s8
# activations).
#
# Environment: THREADS (default 2), SECONDS_PER_POINT (default 5), MODELS (default
# "t0 t1 t2 s lite0"), BATCHES (default "1,16"; BATCHES=1 for a quick latency A/B), INT8
# (default 1; 0 measures float only), CALIB (default ../shared/datasets/ilsvrc2012-val-subset-1300.tar), CALIB_COUNT (default 4:
# calibration runs the reference evaluator in float, slow on FasterNet-S, once per policy; speed
# does not depend on it),
# IMAGENET_EVAL_PYTHON (default .venv/bin/python). IMAGENET_EVAL_BATCH_SHARDS=0 runs our
# engines' batches unsharded (one plan, every primitive split across the threads).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${IMAGENET_EVAL_PYTHON:-.venv/bin/python}
threads=${THREADS:-2}
seconds=${SECONDS_PER_POINT:-5}
models=${MODELS:-t0 t1 t2 s lite0}
batches=${BATCHES:-1,16}
int8=${INT8:-1}
calib=${CALIB:-../shared/datasets/ilsvrc2012-val-subset-1300.tar}
calib_count=${CALIB_COUNT:-4}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The same flags as CI, so this reuses the test build instead of rebuilding everything.
# SKIP_BUILD=1 uses the existing .build/release/imagenet-eval as it is.
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  swift build -c release -Xswiftc -enable-testing --product imagenet-eval > "$out/build.log" 2>&1 \
    || { tail -20 "$out/build.log"; exit 1; }
fi
bin=.build/release/imagenet-eval

cache=.build/fasternet-cache
for m in $models; do
  case $m in
    lite0) path=models/efficientnet-lite0.onnx; label="EfficientNet-Lite0"; preset=efficientnet-lite
      [ -f "$path" ] || { echo "missing $path: run scripts/setup-assets.sh" >&2; exit 1; } ;;
    *) path=$("$python" tools/make_fasternet.py --variant "$m" --opset 13 --cache-dir "$cache" | tail -1)
      label="FasterNet-$(echo "$m" | tr a-z A-Z)"; preset=torchvision ;;
  esac
  echo "== $label ($path)" >&2
  engines=float
  int8_options=()
  if [ "$int8" = 1 ]; then
    engines=float,int8
    int8_options=(--calib "$calib" --calib-count "$calib_count" --preset "$preset")
    # The same tensors for onnxruntime's calibration: our preprocessing, dumped.
    if [ ! -d "$out/calib-$preset" ]; then
      "$bin" inspect --data "$calib" --preset "$preset" --limit "$calib_count" \
        --dump "$calib_count" --dump-dir "$out/calib-$preset" > /dev/null
    fi
    "$python" bench/engine/ort_quantize.py "$path" "$out/calib-$preset" "$out/$m-qdq.onnx" > /dev/null
  fi
  # libgomp's default wait policy spins; with decode threads or other processes on the same
  # cores that spinning costs far more than it saves, so both policies are measured.
  env -u OMP_WAIT_POLICY "$bin" bench --model "$path" --name "$label" --batch "$batches" \
    --engines "$engines" "${int8_options[@]}" \
    --threads "$threads" --seconds "$seconds" --json "$out/$m-ours.json" >&2
  OMP_WAIT_POLICY=passive "$bin" bench --model "$path" --name "$label" --batch "$batches" \
    --engines "$engines" "${int8_options[@]}" \
    --threads "$threads" --seconds "$seconds" --json "$out/$m-passive.json" >&2
  "$python" bench/engine/ort_bench.py "$path" --threads "$threads" --batches "$batches" \
    --seconds "$seconds" --json "$out/$m-ort.json" >&2
  if [ "$int8" = 1 ]; then
    "$python" bench/engine/ort_bench.py "$out/$m-qdq.onnx" --threads "$threads" \
      --batches "$batches" --seconds "$seconds" --json "$out/$m-ort-int8.json" >&2
  fi
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
    quiet = {r["batch_size"]: r for r in passive["results"] if r["engine"] == "float"}
    for r in ours["results"]:
        if r["engine"] != "float":
            continue
        t, p = theirs[r["batch_size"]], quiet[r["batch_size"]]
        print(f"| {ours['model']} | {r['batch_size']} | {r['images_per_second']:.1f} | "
              f"{p['images_per_second']:.1f} | {t['images_per_second']:.1f} | "
              f"{r['images_per_second'] / t['images_per_second']:.2f} | "
              f"{p['images_per_second'] / t['images_per_second']:.2f} | "
              f"{p['latency_ms']:.2f} | {t['latency_ms']:.2f} |")
print(f"\n{threads} threads each; ratio > 1 means the float engine is faster; ms/batch is the mean.")
int8 = [m for m in models if (out / f"{m}-ort-int8.json").exists()]
if int8:
    print("\n| model | batch | int8 img/s (default OpenMP) | int8 img/s (passive) | onnxruntime int8 (QDQ) img/s | float img/s (default / passive) | int8 / ORT int8 (default, passive) | int8 / our float (default, passive) | int8 ms/batch (passive) | ORT int8 ms/batch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in int8:
    ours = json.loads((out / f"{m}-ours.json").read_text())
    passive = json.loads((out / f"{m}-passive.json").read_text())
    qdq = {r["batch_size"]: r for r in json.loads((out / f"{m}-ort-int8.json").read_text())["results"]}
    def rows(report, engine):
        return {r["batch_size"]: r for r in report["results"] if r["engine"] == engine}
    fd, fp, idf, ip = rows(ours, "float"), rows(passive, "float"), rows(ours, "int8"), rows(passive, "int8")
    for b in sorted(idf):
        q = qdq[b]["images_per_second"]
        a, p = idf[b]["images_per_second"], ip[b]["images_per_second"]
        print(f"| {ours['model']} | {b} | {a:.1f} | {p:.1f} | {q:.1f} | "
              f"{fd[b]['images_per_second']:.1f} / {fp[b]['images_per_second']:.1f} | "
              f"{a / q:.2f}, {p / q:.2f} | "
              f"{a / fd[b]['images_per_second']:.2f}, {p / fp[b]['images_per_second']:.2f} | "
              f"{ip[b]['latency_ms']:.2f} | {qdq[b]['latency_ms']:.2f} |")
PY
