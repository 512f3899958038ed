#!/usr/bin/env bash
# End-to-end images/s of `imagenet-eval run` (read tar, decode, preprocess, engines, score, log,
# report) on the 1300 shared ILSVRC2012 images, against bench/e2e/python_peer.py doing the same
# job with Pillow + onnxruntime, 2 threads each: FasterNet-T0 (random weights, torchvision
# preset) and EfficientNet-Lite0 (real weights, efficientnet-lite preset).
#
# ENGINES=float,int8 (the default) runs both engines in one process on each side: ours
# `run --engines float,int8 --calib-method max --calib-count $CALIB`, the peer the float model
# plus an onnxruntime QDQ int8 model that quantize_static calibrates (MinMax = max) on the same
# first $CALIB images with the same preprocessing. Calibration is inside both sides' timed wall
# time; the evaluation-only rates (ours: summary.json timings; the peer: after its int8 session
# exists) are printed too. ENGINES=float gives the float-only table. THREADS overrides the
# thread count, POLICIES the OpenMP wait policies tried for ours ("default passive"), MODELS the
# model labels to run (default both), TAR another flat tarball (e.g. a quick subset).
# SKIP_BUILD=1 uses the existing release binary; BIN another imagenet-eval binary (e.g. a
# baseline build kept aside for an A/B run; implies SKIP_BUILD); PEER=0 skips the Python peer
# (its column then reads n/a) when only ours is being compared. EXTRA adds arguments to ours
# (not understood by a baseline binary that predates the option). SCHEDULES lists
# --engine-schedule values to run back to back for each model and policy (e.g.
# SCHEDULES="auto sequential concurrent"; default: none passed, i.e. the binary's default, auto
# since session 5); the schedule column reads requested -> chosen (summary provenance.execution).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${IMAGENET_EVAL_PYTHON:-.venv/bin/python}
threads=${THREADS:-2}
engines=${ENGINES:-float,int8}
calib=${CALIB:-100}
policies=${POLICIES:-default passive}
schedules=${SCHEDULES:-default}
shared=${SHARED:-../shared}
tar=${TAR:-$shared/datasets/ilsvrc2012-val-subset-1300.tar}
models=${MODELS:-FasterNet-T0 EfficientNet-Lite0}
labels=$shared/labels/caffe_val.txt
[ -f "$tar" ] || { echo "missing $tar" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bin=${BIN:-.build/release/imagenet-eval}
if [ -z "${BIN:-}" ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
  swift build -c release -Xswiftc -enable-testing --product imagenet-eval > "$out/build.log" 2>&1 \
    || { tail -20 "$out/build.log"; exit 1; }
fi
peer_enabled=${PEER:-1}
t0=$("$python" tools/make_fasternet.py --variant t0 --opset 13 --cache-dir .build/fasternet-cache | tail -1)
int8=0
peer_flags=()
ours_flags=(--engines float)
if [ "$engines" = float,int8 ]; then
  int8=1
  peer_flags=(--int8 --calib-count "$calib")
  ours_flags=(--engines float,int8 --calib-method max --calib-count "$calib")
fi

echo "load before: $(uptime)"
echo
echo "| model | engines | OpenMP wait policy | schedule | imagenet-eval run img/s | Python peer img/s | ratio | evaluation only: ours / peer img/s (ratio) | calibration s: ours / peer | top-1 float ours / peer | top-1 int8 ours / peer |"
echo "|---|---|---|---|---:|---:|---:|---|---|---|---|"
for spec in "FasterNet-T0:$t0:torchvision" "EfficientNet-Lite0:models/efficientnet-lite0.onnx:efficientnet-lite"; do
  IFS=: read -r label model preset <<< "$spec"
  case " $models " in *" $label "*) ;; *) continue ;; esac
  if [ "$peer_enabled" = 1 ]; then
    peer=$("$python" bench/e2e/python_peer.py --model "$model" --tar "$tar" --labels "$labels" \
      --preset "$preset" --threads "$threads" "${peer_flags[@]}" 2> "$out/peer.log")
  else
    peer='{}'
  fi
  for policy in $policies; do
  for schedule in $schedules; do
    schedule_flags=()
    [ "$schedule" = default ] || schedule_flags=(--engine-schedule "$schedule")
    run_dir="$out/$label-$policy-$schedule"
    start=$(date +%s.%N)
    if [ "$policy" = default ]; then run_env=(env -u OMP_WAIT_POLICY); else run_env=(env OMP_WAIT_POLICY=passive); fi
    "${run_env[@]}" "$bin" run --model "$model" --data "$tar" --labels "$labels" --preset "$preset" \
      "${ours_flags[@]}" --threads "$threads" --workers "$threads" --out "$run_dir" \
      --quiet "${schedule_flags[@]}" ${EXTRA:-} > "$run_dir.log"
    end=$(date +%s.%N)
    # The phase split `run` prints (evaluation, model load, calibration, build, layer report).
    grep '^speed:' "$run_dir.log" >&2 || true
    "$python" - "$run_dir/summary.json" "$start" "$end" "$peer" "$label" "$policy" "$engines" "$schedule" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
seconds = float(sys.argv[3]) - float(sys.argv[2])  # process wall time, model load and calibration included
ours = summary["samples"] / seconds
peer = json.loads(sys.argv[4])
t = summary["provenance"].get("timings") or {}
ours_eval = summary["provenance"].get("images_per_second") or 0
engines = summary["engines"]
if not peer:  # PEER=0
    nan = float("nan")
    peer = {"images": 1, "evaluation_seconds": nan, "images_per_second": nan,
            "calibration_seconds": nan, "top1": nan, "top1_int8": nan}
peer_eval = peer["images"] / peer["evaluation_seconds"]
int8 = (f"{engines['int8']['top1']:.2f} / {peer['top1_int8']:.2f}" if "int8" in engines else "n/a")
execution = summary["provenance"].get("execution")
schedule = f"{execution['requested']} -> {execution['chosen']}" if execution else sys.argv[8]
print(f"| {sys.argv[5]} | {sys.argv[7]} | {sys.argv[6]} | {schedule} | {ours:.1f} | {peer['images_per_second']:.1f} | "
      f"{ours / peer['images_per_second']:.2f} | {ours_eval:.1f} / {peer_eval:.1f} ({ours_eval / peer_eval:.2f}) | "
      f"{t.get('calibration', 0):.1f} / {peer['calibration_seconds']:.1f} | "
      f"{engines['float']['top1']:.2f} / {peer['top1']:.2f} | {int8} |", flush=True)
PY
  done
  done
done
echo
echo "load after: $(uptime)"
echo "$threads threads each (ours: --threads $threads --workers $threads); first ratio: wall time of the whole process, model loading and calibration included on both sides."
