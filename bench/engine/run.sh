#!/usr/bin/env bash
# Float and int8 engines vs onnxruntime, images/s at batch 1 and 16, same model, same batch,
# same thread count, measured in the same run: FasterNet T0/T1/T2/S (random weights,
# tools/make_fasternet.py, opset 13) and EfficientNet-Lite0 (real weights,
# scripts/setup-assets.sh). Run from anywhere.
#
# int8: our engine calibrates on the first CALIB_COUNT images of CALIB (the model's preset);
# onnxruntime runs the QDQ model that quantize_static makes from the same float model and the
# same preprocessed tensors (bench/engine/ort_quantize.py: s8 per-channel weights, s8
# activations), and our int8 engine runs that QDQ file too (imported: onnxruntime's scales,
# codes and arithmetic), so both engines are also compared on one quantized model.
#
# Environment: THREADS (default 2), SECONDS_PER_POINT (default 5), MODELS (default
# "t0 t1 t2 s lite0"), BATCHES (default "1,16"; BATCHES=1 for a quick latency A/B), INT8
# (default 1; 0 measures float only), CALIB (default ../shared/datasets/ilsvrc2012-val-subset-1300.tar), CALIB_COUNT (default 4:
# calibration runs the reference evaluator in float, slow on FasterNet-S, once per policy; speed
# does not depend on it),
# ROUNDS (default 1: how many times every point is measured on each side, interleaved; the
# tables give medians over rounds and the spread of the per-round ratios), POLICIES (default
# "default passive": libgomp wait policies our engines are measured with),
# IMAGENET_EVAL_PYTHON (default .venv/bin/python), CC (default clang, the Swift toolchain's;
# builds fma_peak.c), OUT (a directory that keeps the raw JSON for bench/engine/summarize.py;
# default a temporary one). IMAGENET_EVAL_BATCH_SHARDS=0 runs our engines' batches unsharded
# (one plan, every primitive split across the threads).
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
rounds=${ROUNDS:-1}
policies=${POLICIES:-default passive}
if [ -n "${OUT:-}" ]; then
  out=$OUT
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

# The same flags as CI, so this reuses the test build instead of rebuilding everything.
# SKIP_BUILD=1 uses the existing .build/release/imagenet-eval as it is.
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  swift build -c release -Xswiftc -enable-testing --product imagenet-eval > "$out/build.log" 2>&1 \
    || { tail -20 "$out/build.log"; exit 1; }
fi
bin=.build/release/imagenet-eval

# The cores' FMA peak before and after the rounds: a VM's clock moves by 10 % or more between
# (and within) sessions, and summarize.py states every engine's GFLOP/s against it.
fma_peak="$out/fma_peak"
"${CC:-clang}" -O3 -std=gnu11 bench/engine/fma_peak.c -o "$fma_peak" -lpthread
"$fma_peak" "$threads" > "$out/fma-peak-before.txt"

cache=.build/fasternet-cache
# Rounds interleave the sides: every round measures each model's points once on each side, so
# a slow phase of the (shared, noisy) machine hits both sides instead of one.
for round in $(seq 1 "$rounds"); do
for m in $models; do
  case $m in
    lite0) path=models/efficientnet-lite0.onnx; label="EfficientNet-Lite0"; preset=efficientnet-lite
      [ -f "$path" ] || { echo "missing $path: run scripts/setup-assets.sh" >&2; exit 1; } ;;
    *) path=$("$python" tools/make_fasternet.py --variant "$m" --opset 13 --cache-dir "$cache" | tail -1)
      label="FasterNet-$(echo "$m" | tr a-z A-Z)"; preset=torchvision ;;
  esac
  echo "== round $round/$rounds: $label ($path)" >&2
  # The peak right before this model's points: the shares in summarize.py's third table use it.
  "$fma_peak" "$threads" 0.5 > "$out/$m-fma-peak-r$round.txt"
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
    if [ ! -f "$out/$m-qdq.onnx" ]; then
      "$python" bench/engine/ort_quantize.py "$path" "$out/calib-$preset" "$out/$m-qdq.onnx" \
        > /dev/null
    fi
  fi
  # libgomp's default wait policy spins; with decode threads or other processes on the same
  # cores that spinning costs far more than it saves, so both policies are measured.
  first_policy_env=()
  for policy in $policies; do
    case $policy in
      default) policy_env=(env -u OMP_WAIT_POLICY) ;;
      passive) policy_env=(env OMP_WAIT_POLICY=passive) ;;
      *) echo "unknown policy $policy (default, passive)" >&2; exit 1 ;;
    esac
    [ ${#first_policy_env[@]} -gt 0 ] || first_policy_env=("${policy_env[@]}")
    "${policy_env[@]}" "$bin" bench --model "$path" --name "$label" --batch "$batches" \
      --engines "$engines" "${int8_options[@]}" \
      --threads "$threads" --seconds "$seconds" --json "$out/$m-$policy-r$round.json" >&2
  done
  "$python" bench/engine/ort_bench.py "$path" --threads "$threads" --batches "$batches" \
    --seconds "$seconds" --json "$out/$m-ort-r$round.json" >&2
  if [ "$int8" = 1 ]; then
    "$python" bench/engine/ort_bench.py "$out/$m-qdq.onnx" --threads "$threads" \
      --batches "$batches" --seconds "$seconds" --json "$out/$m-ort-int8-r$round.json" >&2
    # Our int8 engine on that same file (imported: its scales and codes, onnxruntime's
    # arithmetic), with the first policy.
    "${first_policy_env[@]}" "$bin" bench --model "$out/$m-qdq.onnx" --name "$label (QDQ)" \
      --batch "$batches" --threads "$threads" --seconds "$seconds" \
      --json "$out/$m-imported-r$round.json" >&2
  fi
done
done
"$fma_peak" "$threads" > "$out/fma-peak-after.txt"

"$python" bench/engine/summarize.py "$out" --threads "$threads" --rounds "$rounds" \
  --policies "$policies" --models $models
