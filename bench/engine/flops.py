#!/usr/bin/env python3
"""Floating-point operations of one image through a classifier, counted as direct convolution.

Usage: flops.py MODEL.onnx [MODEL.onnx …] -> "GFLOP/image  model" lines.

Counts 2 × multiply-adds of every Conv (as a direct convolution: output elements × input
channels per group × kernel area), Gemm and MatMul, from ONNX shape inference at batch 1; the
element-wise ops, pooling and reorders are left out (a few per mille of these models). An engine
that runs some convolutions with fewer multiplications (Winograd) is still credited with the
direct count, so GFLOP/s compare engines doing the same work, and can exceed a share of the FMA
peak that the multiplications alone could reach.
"""
import sys

import onnx
from onnx import shape_inference


def direct_flops(path: str) -> float:
    """FLOPs of one image (batch 1) through the model at `path`."""
    model = onnx.load(path)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch.ClearField("dim_param")
    batch.dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for tensor in model.graph.initializer:
        shapes[tensor.name] = list(tensor.dims)

    def shape(name: str, node: onnx.NodeProto) -> list[int]:
        if name not in shapes:
            raise SystemExit(f"{path}: no static shape for {name!r} ({node.op_type} {node.name!r})")
        return shapes[name]

    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            output = shape(node.output[0], node)
            weight = shape(node.input[1], node)  # (out channels, in channels / group, kH, kW…)
            per_output = 1
            for d in weight[1:]:
                per_output *= d
            elements = 1
            for d in output:
                elements *= d
            total += 2 * elements * per_output
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shape(node.input[0], node), shape(node.input[1], node)
            flags = {at.name: at.i for at in node.attribute} if node.op_type == "Gemm" else {}
            inner = a[-2] if flags.get("transA") else a[-1]
            outputs = b[-2] if flags.get("transB") else b[-1]
            rows = 1
            for d in a[:-2] + [a[-1] if flags.get("transA") else a[-2]]:
                rows *= d
            total += 2 * rows * inner * outputs
    return float(total)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(f"{direct_flops(path) / 1e9:.3f}  {path}")
