#!/usr/bin/env python3
"""onnxruntime's output codes for every input code of the QDQ groups the int8 engine holds as
tables (the reference of `LookupTable.onnxRuntimeGelu` and `Int8AddTableKernel`).

Usage:
  ort_code_tables.py gelu S_IN ZP_IN S_OUT ZP_OUT
      DequantizeLinear -> Gelu -> QuantizeLinear (uint8, opset 21) on the 256 codes.
  ort_code_tables.py add S_A ZP_A S_B ZP_B S_OUT ZP_OUT
      DequantizeLinear x2 -> Add -> QuantizeLinear (uint8), which onnxruntime's optimised graph
      runs as QLinearAdd, on all 65,536 code pairs (a major: index a * 256 + b).
Prints one JSON line: {"codes": [...], "optimized_ops": {...}}.
"""
import collections
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def scalar(value, dtype, name):
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def run(nodes, inputs, initializers, feeds):
    graph = helper.make_graph(
        nodes, "table",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, [len(feeds[n])]) for n in inputs],
        [helper.make_tensor_value_info("out", TensorProto.UINT8, [len(feeds[inputs[0]])])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    out = session.run(None, feeds)[0]
    return out.astype(int).tolist(), dict(ops)


def main():
    kind, values = sys.argv[1], sys.argv[2:]
    if kind == "gelu":
        s_in, zp_in, s_out, zp_out = float(values[0]), int(values[1]), float(values[2]), int(values[3])
        codes, ops = run(
            [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"]),
             helper.make_node("Gelu", ["xf"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "so", "zo"], ["out"])],
            ["x"],
            [scalar(s_in, np.float32, "s"), scalar(zp_in, np.uint8, "z"),
             scalar(s_out, np.float32, "so"), scalar(zp_out, np.uint8, "zo")],
            {"x": np.arange(256, dtype=np.uint8)})
    elif kind == "add":
        sa, za, sb, zb, so, zo = (float(values[0]), int(values[1]), float(values[2]), int(values[3]),
                                  float(values[4]), int(values[5]))
        a = np.repeat(np.arange(256, dtype=np.uint8), 256)
        b = np.tile(np.arange(256, dtype=np.uint8), 256)
        codes, ops = run(
            [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["af"]),
             helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bf"]),
             helper.make_node("Add", ["af", "bf"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "so", "zo"], ["out"])],
            ["a", "b"],
            [scalar(sa, np.float32, "sa"), scalar(za, np.uint8, "za"),
             scalar(sb, np.float32, "sb"), scalar(zb, np.uint8, "zb"),
             scalar(so, np.float32, "so"), scalar(zo, np.uint8, "zo")],
            {"a": a, "b": b})
    else:
        raise SystemExit(f"unknown table kind {kind!r}")
    print(json.dumps({"codes": codes, "optimized_ops": ops}))


if __name__ == "__main__":
    main()
