"""Shared by the scripts that write ONNX test cases (onnx_ops.py, onnx_light_models.py): save a
case's model, run it on onnxruntime with graph optimisations off (the unfused reference), and
save its inputs and outputs as .npy files."""

import os

import numpy as np
import onnx
import onnxruntime as ort


def save_and_run(model, directory, feeds):
    """Saves `model` as `directory/model.onnx` and returns onnxruntime's outputs for `feeds`
    (name -> array) on the CPU provider, with every graph optimisation off."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "model.onnx")
    onnx.save(model, path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def save_arrays(directory, inputs, outputs):
    """Writes `input_<i>.npy` for each input array and `output_<i>.npy` (float32) for each
    output."""
    for i, a in enumerate(inputs):
        np.save(os.path.join(directory, f"input_{i}.npy"), a)
    for i, r in enumerate(outputs):
        np.save(os.path.join(directory, f"output_{i}.npy"), np.asarray(r, dtype=np.float32))
