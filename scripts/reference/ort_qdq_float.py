#!/usr/bin/env python3
"""onnxruntime's float32 arithmetic inside QDQ models, for the int8 engine's emulation of it.

onnxruntime's optimised graph of a QDQ model with int8 activations leaves some
DequantizeLinear -> Conv -> QuantizeLinear groups in float (it fuses QLinearConv on uint8
codes only and converts int8 codes to uint8 only where their QuantizeLinear has one consumer),
and runs every Erf with MLAS's polynomial. These cases are the references of
`OnnxRuntimeFloatConvolution` and `OnnxRuntimeArithmetic.erf`.

Usage:
  ort_qdq_float.py erf OUTDIR
      400,001 float32 values and onnxruntime's Erf of them: OUTDIR/erf-input.npy, erf-output.npy.
  ort_qdq_float.py convs OUTDIR
      Float Convs on dequantised int8 codes (DequantizeLinear of the input, the per-channel
      weights and the int32 bias, as a QDQ model has them), run by onnxruntime on batches of
      two images with two threads. Writes per case OUTDIR/<case>-{x,w,b}.npy (codes),
      <case>-y.npy (onnxruntime's float output, NCHW; codes as int32) and OUTDIR/manifest.json.
  ort_qdq_float.py float-convs MODEL.onnx
      Lists the Convs onnxruntime's optimised graph (ORT_ENABLE_EXTENDED) of a QDQ model leaves
      in float, with the reason (which int8 QuantizeLinear keeps several consumers).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def erf(out: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-6, 6, 200001).astype(np.float32),
                        (rng.standard_normal(200000) * 2).astype(np.float32)])
    graph = helper.make_graph([helper.make_node("Erf", ["x"], ["y"])], "erf",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [len(x)])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(x)])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.save(out / "erf-input.npy", x)
    np.save(out / "erf-output.npy", y)


# name, input channels, output channels, input size, kernel, stride, pad
CONV_CASES = [
    ("pointwise-k96", 96, 24, 14, 1, 1, 0),     # one K block
    ("pointwise-k300", 300, 20, 9, 1, 1, 0),    # N < K: K blocks of 256
    ("pointwise-k200-n196", 200, 16, 14, 1, 1, 0),  # N >= K: K blocks of 128
    ("patch-2x2", 40, 24, 12, 2, 2, 0),         # im2col, K = 160
    ("conv-3x3-pad", 8, 12, 9, 3, 1, 1),        # zero padding inside im2col
    ("pointwise-1px", 100, 23, 1, 1, 1, 0),     # matrix-vector kernel, 23 = 5 fours + 2 + 1
    ("conv-7x7-1px", 24, 10, 7, 7, 1, 0),       # matrix-vector kernel on K blocks of 1024
]


def convs(out: Path) -> None:
    rng = np.random.default_rng(3)
    manifest = []
    for name, cin, cout, size, k, stride, pad in CONV_CASES:
        x = rng.integers(-128, 128, (2, cin, size, size)).astype(np.int8)
        w = rng.integers(-127, 128, (cout, cin, k, k)).astype(np.int8)
        sx = np.float32(rng.uniform(0.01, 0.05))
        zx = np.int8(rng.integers(-20, 20))
        sw = rng.uniform(0.001, 0.01, cout).astype(np.float32)
        sb = (sx * sw).astype(np.float32)
        b = rng.integers(-20000, 20000, cout).astype(np.int32)
        inits = [numpy_helper.from_array(np.array(sx), "sx"), numpy_helper.from_array(np.array(zx), "zx"),
                 numpy_helper.from_array(w, "w"), numpy_helper.from_array(sw, "sw"),
                 numpy_helper.from_array(b, "b"), numpy_helper.from_array(sb, "sb")]
        nodes = [helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["xf"]),
                 helper.make_node("DequantizeLinear", ["w", "sw"], ["wf"], axis=0),
                 helper.make_node("DequantizeLinear", ["b", "sb"], ["bf"], axis=0),
                 helper.make_node("Conv", ["xf", "wf", "bf"], ["y"], kernel_shape=[k, k],
                                  strides=[stride, stride], pads=[pad] * 4)]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.INT8, list(x.shape))],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        y = ort.InferenceSession(model.SerializeToString(), options,
                                 providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        # int8 codes as int32 (what the tests' .npy reader takes).
        for suffix, array in (("x", x.astype(np.int32)), ("w", w.astype(np.int32)), ("b", b), ("y", y)):
            np.save(out / f"{name}-{suffix}.npy", array)
        manifest.append({"name": name, "inputScale": float(sx), "inputZeroPoint": int(zx),
                         "weightScales": [float(v) for v in sw], "biasScales": [float(v) for v in sb],
                         "kernel": k, "stride": stride, "pad": pad})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def float_convs(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    model = onnx.load(str(path))
    producers = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1

    def edges(q_output: str) -> int:
        return sum(readers.get(n.output[0], 0) if n.op_type == "DequantizeLinear" else 1
                   for n in model.graph.node if q_output in n.input)

    fused = {n.name for n in optimized.graph.node if n.op_type == "QLinearConv"}
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        dq = producers[n.input[0]]
        q_in = producers.get(dq.input[0])
        q_out = next(c for c in model.graph.node if n.output[0] in c.input)
        reasons = []
        if q_in is not None and q_in.op_type == "QuantizeLinear" and edges(q_in.output[0]) != 1:
            reasons.append(f"input codes read {edges(q_in.output[0])} times")
        if edges(q_out.output[0]) != 1:
            reasons.append(f"output codes read {edges(q_out.output[0])} times")
        state = "QLinearConv" if n.name in fused else "float"
        print(f"{n.name}: {state}{' (' + ', '.join(reasons) + ')' if reasons else ''}")


def main() -> int:
    command, target = sys.argv[1], Path(sys.argv[2])
    if command == "float-convs":
        float_convs(target)
        return 0
    target.mkdir(parents=True, exist_ok=True)
    {"erf": erf, "convs": convs}[command](target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
