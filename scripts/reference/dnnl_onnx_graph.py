#!/usr/bin/env python3
"""Independent reference for the oneDNN binding tests: builds a small ONNX graph with the `onnx`
helper API, runs it in onnxruntime and writes the output as raw float32.

Usage: dnnl_onnx_graph.py SPEC.json
SPEC: {"opset": 20,
       "inputs": [{"name": "x", "shape": [1, 3, 8, 8], "file": "x.f32"}],   # raw float32, C order
       "nodes": [{"op": "Conv", "inputs": ["x", "w"], "outputs": ["y"], "attributes": {...}}],
       "output": "y", "output_file": "y.f32"}
Prints the output shape as JSON on stdout.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    feeds = {}
    graph_inputs = []
    for item in spec["inputs"]:
        data = np.fromfile(item["file"], dtype=np.float32)
        shape = item["shape"]
        if data.size != int(np.prod(shape)):
            sys.exit(f"{item['file']}: {data.size} floats for shape {shape}")
        feeds[item["name"]] = data.reshape(shape)
        graph_inputs.append(helper.make_tensor_value_info(item["name"], TensorProto.FLOAT, shape))
    nodes = [
        helper.make_node(n["op"], n["inputs"], n["outputs"], **n.get("attributes", {}))
        for n in spec["nodes"]
    ]
    output = helper.make_tensor_value_info(spec["output"], TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "dnnl_reference", graph_inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.get("opset", 20))])
    # No onnx.checker: it insists on an output shape, which the spec leaves to onnxruntime.
    options = ort.SessionOptions()
    # Plain kernels in full float32: no graph rewrites that could change the arithmetic.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (result,) = session.run([spec["output"]], feeds)
    np.ascontiguousarray(result, dtype=np.float32).tofile(spec["output_file"])
    print(json.dumps(list(result.shape)))


if __name__ == "__main__":
    main()
