#!/usr/bin/env python3
"""Writes small random-weight ONNX classifiers that exercise the float engine's lowerings.

Usage: dnnl_make_test_model.py KIND OUT.onnx [--size S] [--classes K] [--width W] [--seed N]
KIND:
  fasternet_t0  FasterNet-T0's layout (depths 1-2-8-2, GELU), for bench/engine at 224x224.
  fasternet  FasterNet-like: 4x4/4 stem+BN+ReLU, partial-conv blocks (Split, 3x3 on C/4, Concat,
             1x1 expand+BN+GELU (erf pattern), 1x1 project, residual Add), 2x2/2 merging+BN,
             GlobalAveragePool, 1x1 conv 1280 + ReLU, Flatten, Gemm.
  pconv      Split->Conv->Concat partial convolutions at odd sizes (a 3x3 stem, stride 2, to
             19x19x36, then 9x9x72 and 4x4x144): 3x3 ones over 9, 32 and 70 channels with and
             without bias whose concat may overwrite the source (FasterNet's residual block), one
             whose source is also read elsewhere, and a depthwise and a 5x5 one.
  resnetish  Conv+BN+ReLU stem, MaxPool 3x3/2 (ceil), basic blocks with Add+ReLU and a strided
             projection shortcut, AveragePool, Reshape of a 4D map, Gemm, Softmax.
  mobileish  Depthwise/pointwise convs with HardSwish, ReLU6 (Clip), a squeeze-excite block
             (ReduceMean, HardSigmoid, Mul by a broadcast activation), LeakyRelu, per-channel
             Mul/Add by constants, standalone BatchNormalization, MatMul+Add classifier.
The input is "input" [batch, 3, S, S] with a symbolic batch dimension.
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, array, prefix="c"):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), n))
        return n

    def int_const(self, values, prefix="i"):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), n))
        return n

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k, stride=1, pad=0, group=1, bias=True):
        fan_in = cin // group * k * k
        w = self.rng.normal(0, (2.0 / fan_in) ** 0.5, (cout, cin // group, k, k))
        inputs = [x, self.const(w, "w")]
        if bias:
            inputs.append(self.const(self.rng.normal(0, 0.1, cout), "b"))
        return self.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride],
                       pads=[pad] * 4, group=group)

    def bn(self, x, c):
        return self.op("BatchNormalization", [
            x, self.const(self.rng.uniform(0.5, 1.5, c)), self.const(self.rng.normal(0, 0.1, c)),
            self.const(self.rng.normal(0, 0.1, c)), self.const(self.rng.uniform(0.5, 1.5, c))],
            epsilon=1e-5)

    def gelu_pattern(self, x):
        d = self.op("Div", [x, self.const(np.float32(2 ** 0.5))])
        e = self.op("Erf", [d])
        a = self.op("Add", [e, self.const(np.float32(1.0))])
        m = self.op("Mul", [x, a])
        return self.op("Mul", [m, self.const(np.float32(0.5))])

    def gemm(self, x, cin, cout):
        w = self.rng.normal(0, (1.0 / cin) ** 0.5, (cout, cin))
        return self.op("Gemm", [x, self.const(w), self.const(self.rng.normal(0, 0.1, cout))],
                       transB=1)


def fasternet(b, width, classes, depths=(1, 2, 1), gelu_stages=1):
    x = b.op("Relu", [b.bn(b.conv("input", 3, width, 4, stride=4, bias=False), width)])
    dim = width
    for stage, depth in enumerate(depths):
        if stage > 0:
            x = b.bn(b.conv(x, dim, dim * 2, 2, stride=2, bias=False), dim * 2)
            dim *= 2
        for _ in range(depth):
            part = dim // 4
            a, rest = b.op("Split", [x, b.int_const([part, dim - part])], n_out=2, axis=1)
            a = b.conv(a, part, part, 3, pad=1, bias=False)
            y = b.op("Concat", [a, rest], axis=1)
            y = b.bn(b.conv(y, dim, dim * 2, 1, bias=False), dim * 2)
            y = b.gelu_pattern(y) if stage < gelu_stages else b.op("Relu", [y])
            y = b.conv(y, dim * 2, dim, 1, bias=False)
            x = b.op("Add", [x, y])
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Relu", [b.conv(x, dim, 1280, 1, bias=False)])
    x = b.op("Flatten", [x], axis=1)
    return b.gemm(x, 1280, classes)


def pconv(b, classes):
    def partial(x, dim, part, convolve):
        a, rest = b.op("Split", [x, b.int_const([part, dim - part])], n_out=2, axis=1)
        return b.op("Concat", [convolve(a), rest], axis=1)

    def residual(x, dim, part, convolve):
        y = b.op("Relu", [b.conv(partial(x, dim, part, convolve), dim, dim, 1)])
        return b.op("Add", [x, b.conv(y, dim, dim, 1, bias=False)])

    def conv3x3(part, bias=True):
        return lambda a: b.conv(a, part, part, 3, pad=1, bias=bias)

    x = b.op("Relu", [b.conv("input", 3, 36, 3, stride=2, pad=1)])
    x = residual(x, 36, 9, conv3x3(9))
    # The source is read by the Sigmoid too: the concat gets a buffer of its own.
    y = b.conv(partial(x, 36, 9, conv3x3(9, bias=False)), 36, 36, 1)
    x = b.op("Add", [y, b.op("Sigmoid", [x])])
    x = residual(x, 36, 12, lambda a: b.conv(a, 12, 12, 3, pad=1, group=12))
    x = b.op("Relu", [b.conv(x, 36, 72, 2, stride=2)])
    # 32 channels, a multiple of oneDNN's block of 16: Winograd.
    x = residual(x, 72, 32, conv3x3(32, bias=False))
    x = b.op("Relu", [b.conv(x, 72, 144, 2, stride=2)])
    x = residual(x, 144, 70, conv3x3(70))
    x = residual(x, 144, 36, lambda a: b.conv(a, 36, 36, 5, pad=2))
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    return b.gemm(x, 144, classes)


def resnetish(b, width, classes, size):
    x = b.op("Relu", [b.bn(b.conv("input", 3, width, 3, stride=2, pad=1, bias=False), width)])
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 0, 0], ceil_mode=1)
    for cout, stride in [(width, 1), (width * 2, 2)]:
        y = b.op("Relu", [b.bn(b.conv(x, width if stride == 1 else cout // 2, cout, 3, stride, 1,
                                      bias=False), cout)])
        y = b.bn(b.conv(y, cout, cout, 3, 1, 1, bias=False), cout)
        shortcut = x if stride == 1 else b.bn(b.conv(x, cout // 2, cout, 1, stride, bias=False), cout)
        x = b.op("Relu", [b.op("Add", [y, shortcut])])
    x = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    spatial = x  # [N, 2w, h, w] with h, w > 1: a real NHWC -> row-major reshape
    x = b.op("Reshape", [spatial, b.int_const([0, -1])])
    h = -(-size // 2)  # stem
    h = -(-(h - 3) // 2) + 1  # maxpool ceil
    h = (h + 1) // 2  # stride-2 block
    h = h // 2  # avgpool
    x = b.gemm(x, width * 2 * h * h, classes)
    return b.op("Softmax", [x], axis=1)


def mobileish(b, width, classes):
    x = b.op("HardSwish", [b.conv("input", 3, width, 3, stride=2, pad=1)])
    x = b.op("Clip", [b.conv(x, width, width, 3, pad=1, group=width), b.const(np.float32(0)),
                      b.const(np.float32(6))])
    # Squeeze-excite: the scale is an activation broadcast over H and W.
    s = b.op("ReduceMean", [x], axes=[2, 3], keepdims=1)
    s = b.op("Relu", [b.conv(s, width, width // 2, 1)])
    s = b.op("HardSigmoid", [b.conv(s, width // 2, width, 1)], alpha=0.2, beta=0.5)
    x = b.op("Mul", [x, s])
    x = b.op("LeakyRelu", [b.conv(x, width, width * 2, 1)], alpha=0.1)
    x = b.op("Mul", [x, b.const(b.rng.uniform(0.5, 1.5, (width * 2, 1, 1)))])
    x = b.op("Add", [b.const(b.rng.normal(0, 0.1, (1, width * 2, 1, 1))), x])
    x = b.op("Sigmoid", [b.bn(x, width * 2)])
    x = b.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             count_include_pad=0)
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    x = b.op("MatMul", [x, b.const(b.rng.normal(0, 0.3, (width * 2, classes)))])
    return b.op("Add", [x, b.const(b.rng.normal(0, 0.1, classes))])


def branches(b, width, classes, shared):
    """Three convolutions reading one signed tensor (a stem without activation): two 1x1
    branches, which the int8 engine feeds sign-shifted codes, and a padded 3x3 one, which it
    cannot. Unshared, the second 1x1 branch reads the tensor through an Identity: the same
    codes under another name, so the engine shifts them again."""
    x = b.conv("input", 3, width, 3, stride=2, pad=1)
    y = x if shared else b.op("Identity", [x])
    summed = b.op("Add", [b.conv(x, width, width, 1), b.conv(y, width, width, 1)])
    x = b.op("Add", [summed, b.op("Relu", [b.conv(x, width, width, 3, pad=1)])])
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    return b.gemm(x, width, classes)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind",
                   choices=["fasternet", "fasternet_t0", "pconv", "resnetish", "mobileish", "branches",
                            "branches_unshared"])
    p.add_argument("out")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--width", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    b = Builder(a.seed)
    if a.kind == "fasternet":
        out = fasternet(b, a.width, a.classes)
    elif a.kind == "fasternet_t0":
        # FasterNet-T0's shape: embed 40, depths 1-2-8-2, MLP ratio 2, GELU everywhere.
        out = fasternet(b, a.width, a.classes, depths=(1, 2, 8, 2), gelu_stages=4)
    elif a.kind == "pconv":
        out = pconv(b, a.classes)
    elif a.kind == "resnetish":
        out = resnetish(b, a.width, a.classes, a.size)
    elif a.kind.startswith("branches"):
        out = branches(b, a.width, a.classes, shared=a.kind == "branches")
    else:
        out = mobileish(b, a.width, a.classes)
    graph = helper.make_graph(
        b.nodes, a.kind,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, a.size, a.size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", a.classes])],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, a.out)


if __name__ == "__main__":
    main()
