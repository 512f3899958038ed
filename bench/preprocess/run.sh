#!/usr/bin/env bash
# Decode+preprocess throughput of `imagenet-eval inspect --preset torchvision` on 1 and 2
# worker threads, side by side with the Pillow peer (pillow_peer.py) on 1 and 2 processes.
# imagenet-eval's rate is its steady state (steadyImagesPerSecond: images after the first
# batch), so one-off start-up is not counted; the overall rate is printed too.
#
# Usage: bench/preprocess/run.sh [ARCHIVE.tar]   (default: ../shared/datasets/ilsvrc2012-val-subset-1300.tar)
# Environment: REPEATS (default 3; the best run of each configuration is reported, since the
# machine may be shared), IMAGENET_EVAL_PYTHON (default .venv/bin/python).
# Needs the release build: swift build -c release --product imagenet-eval
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
archive=${1:-$root/../shared/datasets/ilsvrc2012-val-subset-1300.tar}
python=${IMAGENET_EVAL_PYTHON:-$root/.venv/bin/python}
binary=$root/.build/release/imagenet-eval
repeats=${REPEATS:-3}

[ -f "$archive" ] || { echo "run.sh: no archive at $archive" >&2; exit 1; }
[ -x "$binary" ] || { echo "run.sh: build first: swift build -c release --product imagenet-eval" >&2; exit 1; }

results=$(mktemp)
trap 'rm -f "$results"' EXIT

ours() {  # workers -> JSON line
  "$binary" inspect --data "$archive" --preset torchvision --workers "$1" --json |
    "$python" -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"images": r["images"], "images_per_second": r["steadyImagesPerSecond"], "overall": r["imagesPerSecond"]}))'
}
pillow() {  # processes -> JSON line
  "$python" "$here/pillow_peer.py" "$archive" --processes "$1"
}

# Warm the page cache so the first measured run does not pay for the disk.
cat "$archive" > /dev/null
# Interleave the configurations so background load hits all of them alike.
for run in $(seq "$repeats"); do
  for n in 1 2; do
    echo "ours $n $(ours "$n")" >> "$results"
    echo "pillow $n $(pillow "$n")" >> "$results"
  done
done

"$python" - "$results" "$archive" "$repeats" <<'PY'
import json, os, sys
path, archive, repeats = sys.argv[1], sys.argv[2], sys.argv[3]
best, overall, images = {}, {}, {}
for line in open(path):
    tool, n, payload = line.split(" ", 2)
    r = json.loads(payload)
    key = (tool, int(n))
    best[key] = max(best.get(key, 0.0), r["images_per_second"])
    overall[key] = max(overall.get(key, 0.0), r.get("overall", r["images_per_second"]))
    images.setdefault(key, r["images"])
assert len(set(images.values())) == 1, f"tools saw different image counts: {images}"
print(f"archive: {archive} ({images[('ours', 1)]} images), best of {repeats}, {os.cpu_count()} cores")
print(f"load average at the end: {os.getloadavg()[0]:.2f}")
print()
print("| pipeline | 1 thread/process | 2 threads/processes | 2-way scaling |")
print("| --- | ---: | ---: | ---: |")
for tool, name in (("ours", "imagenet-eval inspect --preset torchvision"), ("pillow", "Pillow + numpy (pillow_peer.py)")):
    one, two = best[(tool, 1)], best[(tool, 2)]
    print(f"| {name} | {one:.1f} img/s | {two:.1f} img/s | {two / one:.2f}x |")
print(f"| ratio imagenet-eval / Pillow | {best[('ours', 1)] / best[('pillow', 1)]:.2f}x | {best[('ours', 2)] / best[('pillow', 2)]:.2f}x | |")
print()
print("imagenet-eval counts images after its first batch (steady state); including start-up")
print("(parsing the 50,000-line ground truth, starting threads) it reached "
      f"{overall[('ours', 1)]:.1f} / {overall[('ours', 2)]:.1f} img/s on 1 / 2 threads.")
print("The Pillow peer's clock includes opening the tar and, for 2 processes, forking the pool.")
PY
