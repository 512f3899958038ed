#!/usr/bin/env python3
"""Turns the "light" real-architecture models shipped with the onnx package (ResNet-50,
SqueezeNet, ShuffleNet, Inception-v2; opset 9, exported from Caffe2) into test cases: every
ConstantOfShape weight becomes a random initializer of the same shape (so indexing mistakes
cannot hide behind constant weights), then onnxruntime computes the reference output.

Usage: onnx_light_models.py OUT_DIR [MODEL...]
Writes OUT_DIR/<model>/model.onnx, input_0.npy, output_0.npy and OUT_DIR/manifest.json.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from ort_cases import save_and_run, save_arrays

ort.set_default_logger_severity(3)
OUT = sys.argv[1]
MODELS = sys.argv[2:] or ["squeezenet", "shufflenet", "resnet50", "inception_v2"]
SOURCE = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
rng = np.random.default_rng(42)
manifest = []


def weight(name, shape):
    lower = name.lower()
    if "riv" in lower or "var" in lower:
        return rng.uniform(0.5, 1.5, shape)
    if "rm_" in lower or "mean" in lower:
        return rng.standard_normal(shape) * 0.1
    if lower.endswith("_s_0") or "scale" in lower or "sc_w" in lower:
        return rng.uniform(0.5, 1.5, shape)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    return rng.standard_normal(shape) * 0.1


for name in MODELS:
    model = onnx.load(os.path.join(SOURCE, f"light_{name}.onnx"))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape":
            shape = [int(v) for v in numpy_helper.to_array(inits[node.input[0]])]
            graph.initializer.append(
                numpy_helper.from_array(weight(node.output[0], shape).astype(np.float32), node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input}
    remaining = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(remaining)
    # Random weights saturate the final Softmax; also expose its input (the logits).
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    if softmax:
        graph.output.append(onnx.helper.make_empty_tensor_value_info(softmax[-1].input[0]))
    inputs = [i for i in graph.input if i.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    real_inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    shape = [d.dim_value for d in real_inputs[0].type.tensor_type.shape.dim]
    x = rng.standard_normal(shape).astype(np.float32)
    d = os.path.join(OUT, name)
    ys = save_and_run(model, d, {real_inputs[0].name: x})
    save_arrays(d, [x], ys)
    manifest.append({"name": name, "inputs": 1, "outputs": len(ys), "ops": None})

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(len(manifest))
