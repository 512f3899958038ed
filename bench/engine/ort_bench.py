#!/usr/bin/env python3
"""onnxruntime throughput on a model, for comparison with the float engine.

Usage: ort_bench.py MODEL.onnx [--threads 2] [--batches 1,16] [--seconds 5] [--json OUT]

Same protocol as `imagenet-eval bench`: a fixed random input, a short warm-up, then whole
batches timed for --seconds; reports images/s and mean/p50/p90 batch latency. --json writes
the bench.json shape (`{"model", "model_sha256", "results": [...]}`) with engine
"onnxruntime".
"""
import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    shape = session.get_inputs()[0].shape
    results = []
    for batch in [int(b) for b in a.batches.split(",")]:
        x = np.random.default_rng(0).uniform(-1, 1, [batch] + list(shape[1:])).astype(np.float32)
        warm_start = time.perf_counter()
        warm = 0
        while warm < 2 or (time.perf_counter() - warm_start < a.seconds * 0.1 and warm < 20):
            session.run(None, {name: x})
            warm += 1
        latencies = []
        start = time.perf_counter()
        while len(latencies) < 5 or time.perf_counter() - start < a.seconds:
            t0 = time.perf_counter()
            session.run(None, {name: x})
            latencies.append((time.perf_counter() - t0) * 1000)
        mean = float(np.mean(latencies))
        results.append({
            "engine": "onnxruntime", "batch_size": batch,
            "images_per_second": batch * 1000 / mean, "latency_ms": mean,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p90_ms": float(np.percentile(latencies, 90)),
        })
        print(f"onnxruntime {ort.__version__} threads={a.threads} batch={batch}: "
              f"{batch * 1000 / mean:.1f} img/s ({mean:.2f} ms/batch, "
              f"p50 {results[-1]['p50_ms']:.2f}, p90 {results[-1]['p90_ms']:.2f})")
    if a.json:
        digest = hashlib.sha256(Path(a.model).read_bytes()).hexdigest()
        a.json.write_text(json.dumps(
            {"model": Path(a.model).stem, "model_sha256": digest, "results": results}, indent=1))


if __name__ == "__main__":
    main()
