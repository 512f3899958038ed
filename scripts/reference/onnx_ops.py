#!/usr/bin/env python3
"""Builds small ONNX graphs for every op/opset variant the Model module supports, runs them
with onnxruntime (graph optimisations off) and saves model, inputs and outputs.

Usage: onnx_ops.py OUT_DIR
Writes OUT_DIR/<case>/model.onnx, input_<i>.npy, output_<i>.npy and OUT_DIR/manifest.json:
[{"name", "inputs": n, "outputs": n, "ops": [op types expected after all passes] or null}].
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ort_cases import save_and_run, save_arrays

OUT = sys.argv[1]
ort.set_default_logger_severity(3)
rng = np.random.default_rng(1234)
manifest = []
F = TensorProto.FLOAT


def rand(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def case(name, nodes, inputs, outputs, initializers=(), opset=13, ops=None, feeds=None):
    """inputs: list of (name, array); outputs: list of output names (float, shape inferred)."""
    graph = helper.make_graph(
        nodes, name,
        [vi(n, list(a.shape), helper.np_dtype_to_tensor_dtype(a.dtype)) for n, a in inputs],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
        list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10 if opset >= 21 else 8)
    d = os.path.join(OUT, name)
    results = save_and_run(model, d, {n: a for n, a in inputs})
    save_arrays(d, [a for _, a in inputs], results)
    manifest.append({"name": name, "inputs": len(inputs), "outputs": len(results), "ops": ops})


N = helper.make_node
x4 = rand(2, 4, 9, 11)

# Conv variants.
case("conv_basic", [N("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], [("x", x4)], ["y"],
     [init("w", rand(6, 4, 3, 3)), init("b", rand(6))], ops=["Conv"])
case("conv_group_dilation_stride",
     [N("Conv", ["x", "w"], ["y"], group=2, dilations=[2, 1], strides=[2, 3], pads=[1, 0, 2, 1])],
     [("x", x4)], ["y"], [init("w", rand(6, 2, 3, 2))], opset=11)
case("conv_depthwise_same_upper",
     [N("Conv", ["x", "w", "b"], ["y"], group=4, strides=[2, 2], auto_pad="SAME_UPPER",
        kernel_shape=[3, 3])], [("x", x4)], ["y"], [init("w", rand(4, 1, 3, 3)), init("b", rand(4))])
case("conv_same_lower", [N("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_LOWER")],
     [("x", x4)], ["y"], [init("w", rand(3, 4, 4, 4))])
case("conv_valid", [N("Conv", ["x", "w"], ["y"], auto_pad="VALID")], [("x", x4)], ["y"],
     [init("w", rand(3, 4, 2, 5))], opset=7)
case("conv_1d", [N("Conv", ["x", "w", "b"], ["y"], pads=[2, 1], strides=[2])],
     [("x", rand(2, 3, 17))], ["y"], [init("w", rand(5, 3, 4)), init("b", rand(5))])

# Gemm / MatMul.
case("gemm_trans", [N("Gemm", ["a", "b", "c"], ["y"], alpha=0.7, beta=1.3, transA=1, transB=1)],
     [("a", rand(5, 3))], ["y"], [init("b", rand(4, 5)), init("c", rand(4))], opset=11)
case("gemm_plain", [N("Gemm", ["a", "b"], ["y"])], [("a", rand(3, 5))], ["y"],
     [init("b", rand(5, 4))], opset=11)
case("matmul_batched", [N("MatMul", ["a", "b"], ["y"])], [("a", rand(2, 3, 4, 5))], ["y"],
     [init("b", rand(5, 6))])
case("matmul_add_to_gemm", [N("MatMul", ["a", "b"], ["m"]), N("Add", ["m", "c"], ["y"])],
     [("a", rand(3, 5))], ["y"], [init("b", rand(5, 4)), init("c", rand(4))], ops=["Gemm"])

# Element-wise binary with broadcasting.
for op in ["Add", "Sub", "Mul", "Div"]:
    other = rand(4, 1, 11) if op != "Div" else (np.abs(rand(4, 1, 11)) + 0.5)
    case(f"{op.lower()}_broadcast", [N(op, ["x", "c"], ["y"])], [("x", x4)], ["y"],
         [init("c", other)])
case("add_two_inputs", [N("Add", ["x", "z"], ["y"])], [("x", x4), ("z", rand(1, 4, 1, 1))], ["y"])

# Activations.
for op, attrs, opset in [("Relu", {}, 13), ("LeakyRelu", {"alpha": 0.2}, 13), ("Sigmoid", {}, 13),
                         ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 13), ("HardSwish", {}, 14),
                         ("Tanh", {}, 13), ("Erf", {}, 13)]:
    case(op.lower(), [N(op, ["x"], ["y"], **attrs)], [("x", x4 * 3)], ["y"], opset=opset)
case("clip_attr_opset6", [N("Clip", ["x"], ["y"], min=-0.5, max=0.7)], [("x", x4)], ["y"], opset=7)
case("clip_inputs_min_max", [N("Clip", ["x", "lo", "hi"], ["y"])], [("x", x4)], ["y"],
     [init("lo", np.float32(0)), init("hi", np.float32(6))], opset=13)
case("clip_input_min_only", [N("Clip", ["x", "lo"], ["y"])], [("x", x4)], ["y"],
     [init("lo", np.float32(-0.2))], opset=12)
case("clip_input_max_only", [N("Clip", ["x", "", "hi"], ["y"])], [("x", x4)], ["y"],
     [init("hi", np.float32(0.3))], opset=11)
case("gelu_op20_none", [N("Gelu", ["x"], ["y"])], [("x", x4 * 2)], ["y"], opset=20)
case("gelu_op20_tanh", [N("Gelu", ["x"], ["y"], approximate="tanh")], [("x", x4 * 2)], ["y"], opset=20)

sqrt2 = np.float32(np.sqrt(2.0))
consts = [init("sqrt2", sqrt2), init("one", np.float32(1)), init("half", np.float32(0.5)),
          init("isqrt2", np.float32(1 / np.sqrt(2.0)))]
# x * (1 + erf(x / sqrt2)) * 0.5  (PyTorch's export)
case("gelu_pattern_div", [N("Div", ["x", "sqrt2"], ["d"]), N("Erf", ["d"], ["e"]),
                          N("Add", ["e", "one"], ["a"]), N("Mul", ["x", "a"], ["m"]),
                          N("Mul", ["m", "half"], ["y"])],
     [("x", x4 * 2)], ["y"], consts, ops=["Gelu"])
# (x * 0.5) * (1 + erf(x * 1/sqrt2))
case("gelu_pattern_half_first", [N("Mul", ["x", "isqrt2"], ["d"]), N("Erf", ["d"], ["e"]),
                                 N("Add", ["one", "e"], ["a"]), N("Mul", ["x", "half"], ["h"]),
                                 N("Mul", ["h", "a"], ["y"])],
     [("x", x4 * 2)], ["y"], consts, ops=["Gelu"])
# (0.5 * (1 + erf)) * x
case("gelu_pattern_half_inner", [N("Div", ["x", "sqrt2"], ["d"]), N("Erf", ["d"], ["e"]),
                                 N("Add", ["e", "one"], ["a"]), N("Mul", ["half", "a"], ["m"]),
                                 N("Mul", ["m", "x"], ["y"])],
     [("x", x4 * 2)], ["y"], consts, ops=["Gelu"])
# Matmul -> GELU pattern -> fused into Gemm post-op.
case("gemm_gelu_pattern", [N("Gemm", ["a", "w", "c"], ["g"]), N("Div", ["g", "sqrt2"], ["d"]),
                           N("Erf", ["d"], ["e"]), N("Add", ["e", "one"], ["p"]),
                           N("Mul", ["g", "p"], ["m"]), N("Mul", ["m", "half"], ["y"])],
     [("a", rand(3, 5))], ["y"], consts + [init("w", rand(5, 4)), init("c", rand(4))], ops=["Gemm"])

# Softmax semantics.
x3 = rand(2, 3, 5)
case("softmax_opset11_coerce", [N("Softmax", ["x"], ["y"], axis=1)], [("x", x3)], ["y"], opset=11)
case("softmax_opset13_axis", [N("Softmax", ["x"], ["y"], axis=1)], [("x", x3)], ["y"], opset=13)
case("softmax_default_axis_opset9", [N("Softmax", ["x"], ["y"])], [("x", x3)], ["y"], opset=9)

# BatchNormalization and its fusions.
def bn_params(c, prefix="bn"):
    return [init(f"{prefix}_s", rand(c)), init(f"{prefix}_b", rand(c)), init(f"{prefix}_m", rand(c)),
            init(f"{prefix}_v", np.abs(rand(c)) + 0.1)]
bn_inputs = ["bn_s", "bn_b", "bn_m", "bn_v"]
case("batchnorm_standalone", [N("BatchNormalization", ["x"] + bn_inputs, ["y"], epsilon=1e-3)],
     [("x", x4)], ["y"], bn_params(4), ops=["ScaleShift"])
case("conv_bn_relu", [N("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                      N("BatchNormalization", ["c"] + bn_inputs, ["n"]), N("Relu", ["n"], ["y"])],
     [("x", x4)], ["y"], [init("w", rand(6, 4, 3, 3)), init("b", rand(6))] + bn_params(6), ops=["Conv"])
case("conv_bn_clip6_opset9", [N("Conv", ["x", "w"], ["c"]),
                              N("BatchNormalization", ["c"] + bn_inputs, ["n"]),
                              N("Clip", ["n"], ["y"], min=0.0, max=6.0)],
     [("x", x4 * 3)], ["y"], [init("w", rand(6, 4, 1, 1))] + bn_params(6), opset=9, ops=["Conv"])
for act, attrs, opset in [("LeakyRelu", {"alpha": 0.1}, 13), ("Sigmoid", {}, 13), ("HardSwish", {}, 14),
                          ("Tanh", {}, 13), ("HardSigmoid", {}, 13)]:
    case(f"conv_{act.lower()}", [N("Conv", ["x", "w"], ["c"], pads=[0, 1, 0, 1]), N(act, ["c"], ["y"], **attrs)],
         [("x", x4)], ["y"], [init("w", rand(5, 4, 2, 3))], opset=opset, ops=["Conv"])
case("gemm_relu", [N("Gemm", ["a", "w"], ["g"], transB=1), N("Relu", ["g"], ["y"])],
     [("a", rand(3, 5))], ["y"], [init("w", rand(4, 5))], ops=["Gemm"])

# ResNet basic block: the residual Add fuses into the second Conv as a sum post-op, then Relu.
case("residual_block", [N("Conv", ["x", "w0"], ["s"], pads=[1, 1, 1, 1]), N("Relu", ["s"], ["r"]),
                        N("Conv", ["r", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), N("Relu", ["c1"], ["t"]),
                        N("Conv", ["t", "w2"], ["c2"], pads=[1, 1, 1, 1]),
                        N("Add", ["c2", "r"], ["a"]), N("Relu", ["a"], ["y"])],
     [("x", x4)], ["y"], [init("w0", rand(4, 4, 3, 3, scale=0.3)), init("w1", rand(4, 4, 3, 3, scale=0.3)),
                          init("b1", rand(4)), init("w2", rand(4, 4, 3, 3, scale=0.3))],
     ops=["Conv", "Conv", "Conv"])
# The other operand is read again later: no sum fusion.
case("residual_operand_alive", [N("Conv", ["x", "w0"], ["s"], pads=[1, 1, 1, 1]),
                                N("Conv", ["s", "w1"], ["c"], pads=[1, 1, 1, 1]),
                                N("Add", ["c", "s"], ["a"]), N("Mul", ["a", "s"], ["y"])],
     [("x", x4)], ["y"], [init("w0", rand(4, 4, 3, 3)), init("w1", rand(4, 4, 3, 3))],
     ops=["Conv", "Conv", "Add", "Mul"])

# Pooling.
case("maxpool_pads_strides", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
     [("x", x4)], ["y"])
case("maxpool_ceil_dilation", [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1,
                                 dilations=[1, 2])], [("x", x4)], ["y"], opset=12)
case("maxpool_same_upper", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")],
     [("x", x4)], ["y"], opset=8)
case("avgpool_exclude_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
     [("x", x4)], ["y"])
case("avgpool_include_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                               count_include_pad=1)], [("x", x4)], ["y"])
case("avgpool_ceil_include_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                    count_include_pad=1, ceil_mode=1)], [("x", x4)], ["y"])
case("avgpool_ceil_exclude_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
     [("x", x4)], ["y"], opset=10)
case("global_average_pool", [N("GlobalAveragePool", ["x"], ["y"])], [("x", x4)], ["y"])
case("reducemean_attr_keep", [N("ReduceMean", ["x"], ["y"], axes=[2, 3])], [("x", x4)], ["y"])
case("reducemean_attr_nokeep", [N("ReduceMean", ["x"], ["y"], axes=[-1, 1], keepdims=0)], [("x", x4)], ["y"])
case("reducemean_input_opset18", [N("ReduceMean", ["x", "axes"], ["y"], keepdims=0)], [("x", x4)], ["y"],
     [init("axes", np.array([2, 3], dtype=np.int64))], opset=18)
case("reducemean_all", [N("ReduceMean", ["x"], ["y"])], [("x", x4)], ["y"])

# Shape ops.
case("flatten_axis2", [N("Flatten", ["x"], ["y"], axis=2)], [("x", x4)], ["y"])
case("reshape_zero_minus_one", [N("Reshape", ["x", "s"], ["y"])], [("x", x4)], ["y"],
     [init("s", np.array([0, -1, 11], dtype=np.int64))])
case("reshape_allowzero_opset14", [N("Reshape", ["x", "s"], ["y"], allowzero=1)], [("x", x4)], ["y"],
     [init("s", np.array([8, 99], dtype=np.int64))], opset=14)
# PyTorch's x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
case("reshape_shape_chain", [N("Shape", ["x"], ["sh"]), N("Constant", [], ["zero"], value=init("zero_t", np.array(0, dtype=np.int64))),
                             N("Gather", ["sh", "zero"], ["n"], axis=0), N("Unsqueeze", ["n"], ["n1"], axes=[0]),
                             N("Constant", [], ["m1"], value=init("m1_t", np.array([-1], dtype=np.int64))),
                             N("Concat", ["n1", "m1"], ["target"], axis=0), N("Reshape", ["x", "target"], ["y"])],
     [("x", x4)], ["y"], opset=11, ops=["Reshape"])
case("shape_chain_cast_mul", [N("Shape", ["x"], ["sh"]), N("Slice", ["sh", "st", "en"], ["hw"]),
                              N("Cast", ["hw"], ["hwf"], to=TensorProto.FLOAT), N("Mul", ["x", "k"], ["xk"]),
                              N("ReduceMean", ["xk"], ["r"], axes=[2], keepdims=0),
                              N("Reshape", ["r", "t"], ["y"])],
     [("x", x4)], ["y"], [init("st", np.array([2], dtype=np.int64)), init("en", np.array([4], dtype=np.int64)),
                          init("k", np.float32(2)), init("t", np.array([2, -1], dtype=np.int64))])
case("transpose", [N("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], [("x", x4)], ["y"])
case("transpose_default", [N("Transpose", ["x"], ["y"])], [("x", x3)], ["y"])
case("squeeze_attr_opset11", [N("Squeeze", ["x"], ["y"], axes=[1, 3])], [("x", rand(2, 1, 3, 1))], ["y"], opset=11)
case("squeeze_input_opset13", [N("Squeeze", ["x", "ax"], ["y"])], [("x", rand(2, 1, 3, 1))], ["y"],
     [init("ax", np.array([-1], dtype=np.int64))])
case("squeeze_all", [N("Squeeze", ["x"], ["y"])], [("x", rand(2, 1, 3, 1))], ["y"])
case("unsqueeze_attr_opset11", [N("Unsqueeze", ["x"], ["y"], axes=[0, 3])], [("x", x3)], ["y"], opset=11)
case("unsqueeze_input_opset13", [N("Unsqueeze", ["x", "ax"], ["y"])], [("x", x3)], ["y"],
     [init("ax", np.array([-1, 1], dtype=np.int64))])
case("concat", [N("Concat", ["x", "z", "x"], ["y"], axis=1)], [("x", x4), ("z", rand(2, 3, 9, 11))], ["y"])
case("split_attr_opset11", [N("Split", ["x"], ["y0", "y1"], axis=1, split=[1, 3])], [("x", x4)], ["y0", "y1"], opset=11)
case("split_input_opset13", [N("Split", ["x", "sp"], ["y0", "y1", "y2"], axis=-1)], [("x", x4)], ["y0", "y1", "y2"],
     [init("sp", np.array([2, 4, 5], dtype=np.int64))])
case("split_equal", [N("Split", ["x"], ["y0", "y1"], axis=1)], [("x", x4)], ["y0", "y1"])
case("split_num_outputs_opset18", [N("Split", ["x"], ["y0", "y1", "y2"], axis=3, num_outputs=3)],
     [("x", x4)], ["y0", "y1", "y2"], opset=18)
case("slice_attr_opset9", [N("Slice", ["x"], ["y"], starts=[1, -5], ends=[9223372036854775807, -1], axes=[1, 3])],
     [("x", x4)], ["y"], opset=9)
case("slice_inputs_steps", [N("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], [("x", x4)], ["y"],
     [init("st", np.array([-1, 0, 7], dtype=np.int64)), init("en", np.array([-9223372036854775808, 9223372036854775807, 1], dtype=np.int64)),
      init("ax", np.array([1, 2, 3], dtype=np.int64)), init("sp", np.array([-1, 3, -2], dtype=np.int64))])
case("slice_inputs_default_axes", [N("Slice", ["x", "st", "en"], ["y"])], [("x", x3)], ["y"],
     [init("st", np.array([0, 1], dtype=np.int64)), init("en", np.array([1, 3], dtype=np.int64))])
case("pad_attr_opset10", [N("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 1, 0, 3], value=1.5)], [("x", x4)], ["y"], opset=10)
case("pad_inputs_constant", [N("Pad", ["x", "p", "v"], ["y"])], [("x", x4)], ["y"],
     [init("p", np.array([0, 0, 2, 1, 0, 0, 1, 2], dtype=np.int64)), init("v", np.float32(-0.5))])
case("pad_reflect", [N("Pad", ["x", "p"], ["y"], mode="reflect")], [("x", x4)], ["y"],
     [init("p", np.array([0, 0, 2, 1, 0, 0, 1, 3], dtype=np.int64))])
case("pad_edge", [N("Pad", ["x", "p"], ["y"], mode="edge")], [("x", x4)], ["y"],
     [init("p", np.array([0, 1, 2, 1, 0, 0, 1, 3], dtype=np.int64))])
case("identity_dropout", [N("Identity", ["x"], ["i"]), N("Dropout", ["i"], ["y"])], [("x", x4)], ["y"])
case("dropout_opset7_ratio", [N("Dropout", ["x"], ["y"], ratio=0.3)], [("x", x4)], ["y"], opset=7)
case("gather_axis1", [N("Gather", ["x", "idx"], ["y"], axis=1)], [("x", x4)], ["y"],
     [init("idx", np.array([[3, 0], [-1, 2]], dtype=np.int64))])
case("cast_roundtrip", [N("Cast", ["x"], ["i"], to=TensorProto.INT32), N("Cast", ["i"], ["y"], to=TensorProto.FLOAT)],
     [("x", x4 * 5)], ["y"])
case("constant_node_add", [N("Constant", [], ["c"], value=init("ct", rand(11))), N("Add", ["x", "c"], ["y"])],
     [("x", x4)], ["y"])
case("constant_folding_chain", [N("Mul", ["a", "b"], ["ab"]), N("Add", ["ab", "a"], ["k"]),
                                N("Transpose", ["k"], ["kt"], perm=[1, 0]), N("MatMul", ["x", "kt"], ["y"])],
     [("x", rand(3, 5))], ["y"], [init("a", rand(4, 5)), init("b", rand(4, 5))], ops=["MatMul"])

# A small classifier mixing everything, with a symbolic batch.
def mini_net(name, opset):
    nodes = [N("Conv", ["x", "w0", "b0"], ["c0"], strides=[2, 2], pads=[1, 1, 1, 1]),
             N("BatchNormalization", ["c0"] + bn_inputs, ["n0"]), N("Relu", ["n0"], ["r0"]),
             N("MaxPool", ["r0"], ["p0"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             N("Conv", ["p0", "wm"], ["cm"], pads=[1, 1, 1, 1]), N("Relu", ["cm"], ["rm"]),
             N("Conv", ["rm", "w1"], ["c1"], pads=[1, 1, 1, 1], group=8),
             N("Add", ["c1", "p0"], ["a1"]), N("Relu", ["a1"], ["r1"]),
             N("GlobalAveragePool", ["r1"], ["g"]), N("Flatten", ["g"], ["f"]),
             N("Gemm", ["f", "fw", "fb"], ["logits"], transB=1), N("Softmax", ["logits"], ["y"], axis=1)]
    inits = [init("w0", rand(8, 3, 3, 3, scale=0.3)), init("b0", rand(8)), init("w1", rand(8, 1, 3, 3, scale=0.3)),
             init("wm", rand(8, 8, 3, 3, scale=0.2)),
             init("fw", rand(10, 8)), init("fb", rand(10))] + bn_params(8)
    graph = helper.make_graph(nodes, name, [vi("x", ["N", 3, 32, 32])], [vi("y", ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    d = os.path.join(OUT, name)
    x = rand(3, 3, 32, 32)
    save_arrays(d, [x], save_and_run(model, d, {"x": x}))
    manifest.append({"name": name, "inputs": 1, "outputs": 1,
                     "ops": ["Conv", "MaxPool", "Conv", "Conv", "GlobalAveragePool", "Flatten", "Gemm", "Softmax"]})

mini_net("mini_net_opset11", 11)
mini_net("mini_net_opset17", 17)

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print(len(manifest))
