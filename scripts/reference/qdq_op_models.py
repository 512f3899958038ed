#!/usr/bin/env python3
"""Writes tiny random-weight classifiers around the ops the QDQ export must write back that the
models of dnnl_make_test_model.py do not have.

Usage: qdq_op_models.py CASE OUT.onnx
CASE:
  tanh_transpose  Conv -> Tanh -> Transpose (H, W swapped) -> Conv, Gemm head.
  pad_slice_sub   Conv + Relu -> Pad (constant 0.5) -> Slice -> Sub (constant) -> Div (constant).
  concat_scales   Two convs with outputs of very different ranges -> Concat -> Conv.
  gelu_tanh       Opset 20 Gelu (approximate tanh) and Gelu (exact) standalone, Squeeze/Unsqueeze.
  softmax11       Opset 11 Softmax on a 3-D tensor with axis 1 (the 2-D coercion) as the output.
Every model takes "input" [batch, 3, 16, 16] (symbolic batch) and returns 10 values per image.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CASE, OUT = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
nodes, inits = [], []


def const(name, array, dtype=np.float32):
    inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
    return name


def node(op, inputs, output, **attrs):
    nodes.append(helper.make_node(op, inputs, [output], name=f"{op}_{output}", **attrs))
    return output


def conv(x, cin, cout, name, k=3, gain=1.0):
    w = rng.normal(0, gain * (2.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k))
    return node("Conv", [x, const(f"{name}_w", w), const(f"{name}_b", rng.normal(0, 0.1, cout))],
                name, kernel_shape=[k, k], pads=[k // 2] * 4)


def head(x, c):
    g = node("GlobalAveragePool", [x], "pool")
    f = node("Flatten", [g], "flat", axis=1)
    return node("Gemm", [f, const("fc_w", rng.normal(0, c ** -0.5, (10, c))),
                         const("fc_b", rng.normal(0, 0.1, 10))], "logits", transB=1)


opset = 17
if CASE == "tanh_transpose":
    x = node("Tanh", [conv("input", 3, 8, "c1")], "t")
    x = node("Transpose", [x], "tr", perm=[0, 1, 3, 2])
    out = head(node("Relu", [conv(x, 8, 8, "c2")], "r"), 8)
elif CASE == "pad_slice_sub":
    x = node("Relu", [conv("input", 3, 8, "c1")], "r")
    x = node("Pad", [x, const("pads", [0, 0, 1, 1, 0, 0, 1, 1], np.int64),
                     const("pad_value", 0.5)], "padded", mode="constant")
    x = node("Slice", [x, const("starts", [2], np.int64), const("ends", [17], np.int64),
                       const("axes", [3], np.int64)], "sliced")
    x = node("Sub", [x, const("shift", rng.normal(0, 0.5, (8, 1, 1)))], "sub")
    x = node("Div", [x, const("divisor", np.float32(1.7))], "div")
    out = head(x, 8)
elif CASE == "concat_scales":
    a = node("Relu", [conv("input", 3, 4, "ca", gain=0.3)], "ra")
    b = conv("input", 3, 4, "cb", gain=4.0)
    x = node("Concat", [a, b], "cat", axis=1)
    out = head(node("Relu", [conv(x, 8, 8, "c2")], "r"), 8)
elif CASE == "gelu_tanh":
    opset = 20
    x = node("Gelu", [conv("input", 3, 8, "c1")], "g1", approximate="tanh")
    x = node("Gelu", [conv(x, 8, 8, "c2")], "g2")
    g = node("GlobalAveragePool", [x], "pool")
    s = node("Squeeze", [g, const("sq_axes", [2, 3], np.int64)], "squeezed")
    u = node("Unsqueeze", [s, const("un_axes", [2], np.int64)], "unsqueezed")
    f = node("Flatten", [u], "flat", axis=1)
    out = node("Gemm", [f, const("fc_w", rng.normal(0, 8 ** -0.5, (10, 8))),
                        const("fc_b", rng.normal(0, 0.1, 10))], "logits", transB=1)
elif CASE == "softmax11":
    opset = 11
    x = head(node("Relu", [conv("input", 3, 8, "c1")], "r"), 8)
    x = node("Reshape", [x, const("shape", [0, 2, 5], np.int64)], "r3")
    x = node("Softmax", [x], "soft", axis=1)
    out = node("Reshape", [x, const("shape2", [0, 10], np.int64)], "probabilities")
else:
    sys.exit(f"unknown case {CASE}")

graph = helper.make_graph(
    nodes, CASE, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
    [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 10])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
onnx.checker.check_model(model, full_check=True)
onnx.save(model, OUT)
