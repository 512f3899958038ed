#!/usr/bin/env python3
"""Checks and runs a QDQ model written by imagenet-eval with onnxruntime (the interoperability
reference of the QDQ export).

Usage: qdq_onnxruntime.py MODEL.onnx INPUT.npy OUTPUT.npy [--batch B] [--optimization all|none]

onnx.checker.check_model (full_check, with shape inference) must pass; the input is run in
chunks of B images (another batch size than the exporter's, so the symbolic batch dimension is
exercised) with onnxruntime's CPU provider at the given graph optimisation level; the logits
are saved as float32. Prints one JSON line: the op counts of the model, and, at level `all`, of
onnxruntime's optimised graph (QLinearConv etc. show that the QDQ groups were recognised), the
int8/int32 initializer counts and the opset.
"""
import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--batch", type=int, default=7)
    p.add_argument("--optimization", choices=["all", "none"], default="all")
    a = p.parse_args()

    model = onnx.load(a.model)
    onnx.checker.check_model(model, full_check=True)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    types = collections.Counter(
        onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer)

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 2
    optimized_ops = {}
    with tempfile.TemporaryDirectory() as tmp:
        if a.optimization == "all":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        else:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
        if a.optimization == "all":
            optimized = onnx.load(options.optimized_model_filepath)
            optimized_ops = dict(collections.Counter(n.op_type for n in optimized.graph.node))

    x = np.load(a.input).astype(np.float32)
    name = session.get_inputs()[0].name
    outputs = [session.run(None, {name: x[i:i + a.batch]})[0] for i in range(0, len(x), a.batch)]
    np.save(a.output, np.concatenate(outputs).astype(np.float32))
    print(json.dumps({
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "ops": dict(ops),
        "initializer_types": dict(types),
        "optimized_ops": optimized_ops,
    }, sort_keys=True))


if __name__ == "__main__":
    main()
