#!/usr/bin/env bash
# End-to-end images/s of `imagenet-eval run` (read tar, decode, preprocess, float engine, score,
# log, report) on the 1300 shared ILSVRC2012 images, against bench/e2e/python_peer.py doing the
# same job with Pillow + onnxruntime, 2 threads each: FasterNet-T0 (random weights, torchvision
# preset) and EfficientNet-Lite0 (real weights, efficientnet-lite preset). Float only until the
# int8 engine exists. Run from anywhere; THREADS overrides the thread count.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${IMAGENET_EVAL_PYTHON:-.venv/bin/python}
threads=${THREADS:-2}
shared=${SHARED:-../shared}
tar=$shared/datasets/ilsvrc2012-val-subset-1300.tar
labels=$shared/labels/caffe_val.txt
[ -f "$tar" ] || { echo "missing $tar" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
swift build -c release -Xswiftc -enable-testing --product imagenet-eval > "$out/build.log" 2>&1 \
  || { tail -20 "$out/build.log"; exit 1; }
bin=.build/release/imagenet-eval
t0=$("$python" tools/make_fasternet.py --variant t0 --opset 13 --cache-dir .build/fasternet-cache | tail -1)

echo "| model | OpenMP wait policy | imagenet-eval run img/s | Python peer img/s | ratio | top-1 ours / peer |"
echo "|---|---|---:|---:|---:|---|"
for spec in "FasterNet-T0:$t0:torchvision" "EfficientNet-Lite0:models/efficientnet-lite0.onnx:efficientnet-lite"; do
  IFS=: read -r label model preset <<< "$spec"
  peer=$("$python" bench/e2e/python_peer.py --model "$model" --tar "$tar" --labels "$labels" \
    --preset "$preset" --threads "$threads")
  for policy in default passive; do
    start=$(date +%s.%N)
    if [ $policy = default ]; then run_env=(env -u OMP_WAIT_POLICY); else run_env=(env OMP_WAIT_POLICY=passive); fi
    "${run_env[@]}" "$bin" run --model "$model" --data "$tar" --labels "$labels" --preset "$preset" \
      --engines float --threads "$threads" --workers "$threads" --out "$out/$label-$policy" --quiet > /dev/null
    end=$(date +%s.%N)
    "$python" - "$out/$label-$policy/summary.json" "$start" "$end" "$peer" "$label" "$policy" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
seconds = float(sys.argv[3]) - float(sys.argv[2])  # process wall time, model loading included
ours = summary["samples"] / seconds
peer = json.loads(sys.argv[4])
print(f"| {sys.argv[5]} | {sys.argv[6]} | {ours:.1f} | {peer['images_per_second']:.1f} | "
      f"{ours / peer['images_per_second']:.2f} | {summary['engines']['float']['top1']:.2f} / {peer['top1']:.2f} |")
PY
  done
done
echo
echo "$threads threads each (ours: --threads $threads --workers $threads); wall time of the whole process, model loading included; float only (int8 pending)."
