#!/usr/bin/env python3
"""Per-operator time of the float engine and of onnxruntime on one model, side by side.

Usage: profile.py MODEL.onnx [--batch 1] [--threads 1] [--seconds 3] [--runs 20]
                  [--bin .build/release/imagenet-eval] [--layers]

Ours: `imagenet-eval bench` under ONEDNN_VERBOSE=1; every primitive's time is taken as its
minimum over the timed runs (a run starts at the input reorder), then summed per kind
(convolutions split into 1x1, 3x3 and other). onnxruntime: its session profiler, each node's
minimum over --runs runs, summed per op type. Minimums, not means, so that a loaded machine
(where a run is often preempted) still gives comparable figures: only primitives shorter than
a scheduler time slice (a few ms) are reliably measured this way, so prefer --threads 1 and
batch 1 under load. --layers also lists every primitive / node.

Only oneDNN primitives appear in ONEDNN_VERBOSE: the engine's own passes (the AVX-512 GELU
after GELU convolutions, Swift data movement) are not in "ours". Set IMAGENET_EVAL_GELU_POSTOP=1
to profile with oneDNN's GELU post-op instead, where the GELU is inside the convolutions' times.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort


def ours(a):
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    out = subprocess.run(
        [a.bin, "bench", "--model", a.model, "--batch", str(a.batch), "--threads", str(a.threads),
         "--seconds", str(a.seconds)], env=env, capture_output=True, text=True, check=True).stdout
    lines = [l.split(",") for l in out.splitlines() if l.startswith("onednn_verbose,exec,cpu")]
    runs, current = [], None
    for f in lines:
        # The input reorder from the model's NCHW (abcd) starts each run.
        if f[3] == "reorder" and f[-2].startswith(f"{a.batch}x") and "abcd" in f[6].split()[0]:
            current = []
            runs.append(current)
        if current is not None:
            current.append(f)
    runs = [r for r in runs[1:-1] if len(r) == len(runs[1])]
    if not runs:
        sys.exit("no complete timed runs in the verbose output")
    minimum = [min(float(r[i][-1]) for r in runs) for i in range(len(runs[0]))]
    kinds = collections.Counter()
    for i, f in enumerate(runs[0]):
        kind = f"{f[3]} {f[4]}"
        if f[3] == "convolution":
            kind += " 1x1" if "kh1" in f[-2] else " 3x3" if "kh3" in f[-2] else " other"
        kinds[kind] += minimum[i]
    layers = [(minimum[i], f"{f[3]} {f[4]} {f[-2]}") for i, f in enumerate(runs[0])]
    return len(runs), kinds, layers


def theirs(a):
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "ort-profile")
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    shape = [a.batch] + list(session.get_inputs()[0].shape[1:])
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    for _ in range(a.runs):
        session.run(None, {session.get_inputs()[0].name: x})
    path = session.end_profiling()
    events = json.loads(Path(path).read_text())
    os.remove(path)
    per_node = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[(e["name"][: -len("_kernel_time")], e["args"].get("op_name"))].append(e["dur"])
    kinds = collections.Counter()
    layers = []
    for (name, op), durations in per_node.items():
        kinds[op] += min(durations) / 1000
        layers.append((min(durations) / 1000, f"{op} {name}"))
    return kinds, layers


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--bin", default=".build/release/imagenet-eval")
    p.add_argument("--layers", action="store_true")
    a = p.parse_args()
    count, our_kinds, our_layers = ours(a)
    their_kinds, their_layers = theirs(a)
    print(f"{a.model}, batch {a.batch}, {a.threads} thread(s); sums of per-primitive minimums "
          f"over {count} runs (ours) and {a.runs} runs (onnxruntime)\n")
    print("| float engine primitive | ms | onnxruntime op | ms |")
    print("|---|---:|---|---:|")
    left, right = our_kinds.most_common(), their_kinds.most_common()
    for i in range(max(len(left), len(right))):
        l = f"{left[i][0]} | {left[i][1]:.3f}" if i < len(left) else " | "
        r = f"{right[i][0]} | {right[i][1]:.3f}" if i < len(right) else " | "
        print(f"| {l} | {r} |")
    total_ours, total_theirs = sum(our_kinds.values()), sum(their_kinds.values())
    print(f"| **total** | **{total_ours:.3f}** | **total** | **{total_theirs:.3f}** |")
    print(f"\nonnxruntime / ours: {total_theirs / total_ours:.2f} (oneDNN primitives only: the "
          "engine's own passes, e.g. GELU, are not counted)")
    if a.layers:
        print("\nours:")
        for t, what in our_layers:
            print(f"  {t:8.3f} {what}")
        print("\nonnxruntime:")
        for t, what in their_layers:
            print(f"  {t:8.3f} {what}")


if __name__ == "__main__":
    main()
