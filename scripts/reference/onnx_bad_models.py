#!/usr/bin/env python3
"""Writes malformed and hostile ONNX models for the loader's error tests.

Usage: onnx_bad_models.py OUT_DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(7)
F = TensorProto.FLOAT
w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)


def model(nodes, initializers, path, opset=13):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", F, None)], initializers)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return m


conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", pads=[1, 1, 1, 1])
valid = model([conv], [numpy_helper.from_array(w, "w")], os.path.join(OUT, "valid.onnx"))
data = valid.SerializeToString()
with open(os.path.join(OUT, "truncated.onnx"), "wb") as f:
    f.write(data[: len(data) // 2])
with open(os.path.join(OUT, "not_onnx.onnx"), "wb") as f:
    f.write(b"this is a text file, not a model\n" * 10)
model([conv], [], os.path.join(OUT, "missing_initializer.onnx"))
model([helper.make_node("Relu", ["x"], ["r"], name="relu0"),
       helper.make_node("TopK", ["r", "k"], ["t", "i"], name="topk_node"),
       helper.make_node("MyFancyOp", ["t"], ["y"], name="fancy_node", domain="com.example")],
      [numpy_helper.from_array(np.array([3], dtype=np.int64), "k")], os.path.join(OUT, "unsupported.onnx"))
short = numpy_helper.from_array(w, "w")
short.raw_data = short.raw_data[:100]
model([conv], [short], os.path.join(OUT, "raw_size_mismatch.onnx"))
model([conv], [numpy_helper.from_array(rng.standard_normal((6, 5, 3, 3)).astype(np.float32), "w")],
      os.path.join(OUT, "channel_mismatch.onnx"))
huge = TensorProto(name="w", data_type=F, dims=[1 << 40, 1 << 30])
model([conv], [huge], os.path.join(OUT, "huge_dims.onnx"))
negative = TensorProto(name="w", data_type=F, dims=[6, -4, 3, 3])
model([conv], [negative], os.path.join(OUT, "negative_dims.onnx"))


def external(directory, location, write_data):
    d = os.path.join(OUT, directory)
    os.makedirs(d, exist_ok=True)
    t = TensorProto(name="w", data_type=F, dims=list(w.shape))
    t.data_location = TensorProto.EXTERNAL
    for key, value in [("location", location), ("offset", "16"), ("length", str(w.nbytes))]:
        entry = t.external_data.add()
        entry.key = key
        entry.value = value
    if write_data:
        with open(os.path.join(d, "weights.bin"), "wb") as f:
            f.write(b"\0" * 16 + w.tobytes())
    model([conv], [t], os.path.join(d, "model.onnx"))


external("ext_ok", "weights.bin", True)
external("ext_absolute", os.path.abspath(os.path.join(OUT, "ext_ok", "weights.bin")), False)
external("ext_dotdot", "../ext_ok/weights.bin", False)
external("ext_symlink", "link.bin", False)
link = os.path.join(OUT, "ext_symlink", "link.bin")
if os.path.lexists(link):
    os.remove(link)
os.symlink(os.path.join(OUT, "ext_ok", "weights.bin"), link)
np.save(os.path.join(OUT, "weights.npy"), w)
