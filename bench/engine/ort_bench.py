#!/usr/bin/env python3
"""onnxruntime throughput on a model, for comparison with the float engine.

Usage: ort_bench.py MODEL.onnx [--threads 2] [--batches 1,16] [--seconds 5]
"""
import argparse
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    shape = session.get_inputs()[0].shape
    for batch in [int(b) for b in a.batches.split(",")]:
        x = np.random.default_rng(0).uniform(-1, 1, [batch] + list(shape[1:])).astype(np.float32)
        for _ in range(3):
            session.run(None, {name: x})
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < a.seconds:
            session.run(None, {name: x})
            runs += 1
        elapsed = time.perf_counter() - start
        print(f"onnxruntime {ort.__version__} threads={a.threads} batch={batch}: "
              f"{runs * batch / elapsed:.1f} img/s ({elapsed / runs * 1000:.2f} ms/batch)")


if __name__ == "__main__":
    main()
