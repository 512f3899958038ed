#!/usr/bin/env python3
"""Runs an ONNX model in onnxruntime (CPU, float32) on a raw float32 input.

Usage: dnnl_run_onnx.py MODEL.onnx INPUT.f32 N,C,H,W OUTPUT.f32
Writes the first output as raw float32 and prints its shape as JSON.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    model, input_path, shape, output_path = sys.argv[1:5]
    shape = [int(v) for v in shape.split(",")]
    x = np.fromfile(input_path, dtype=np.float32).reshape(shape)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    (y,) = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: x})[:1]
    np.ascontiguousarray(y, dtype=np.float32).tofile(output_path)
    print(json.dumps(list(y.shape)))


if __name__ == "__main__":
    main()
