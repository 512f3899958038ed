#!/usr/bin/env python3
"""Builds quantized ONNX models with onnxruntime's quantize_static and runs onnxruntime on them.

The references for the int8 engine's import of quantized models (QDQ and QOperator formats).

Usage:
  ort_quantize.py ops OUTDIR
      Small float graphs, one per quantizable op (Conv, depthwise Conv, Gemm, MatMul, Add, Mul,
      AveragePool, GlobalAveragePool, MaxPool, Concat, Sigmoid, LeakyRelu), each quantized in
      both formats with int8 and uint8 activations (int8 weights per channel), calibrated on 8
      fixed random inputs. Writes OUTDIR/<case>/{model.onnx,input.npy,output.npy} and
      OUTDIR/manifest.json.
  ort_quantize.py models OUTDIR --inputs X.npy --calibration N NAME=FLOAT.onnx ...
      Quantizes each float model twice (QDQ with int8 activations, QOperator with uint8
      activations; int8 per-channel weights), calibrated on the first N images of X.npy,
      and runs onnxruntime on all of X, with all graph optimisations and with none (the
      model's definition). Writes OUTDIR/<name>-<format>.onnx, OUTDIR/<name>-<format>.npy and
      OUTDIR/<name>-<format>-definition.npy (outputs) and OUTDIR/manifest.json. With
      --cache DIR the results live in DIR under a digest of the inputs (script, versions,
      images, float models, arguments) and OUTDIR gets symbolic links to them.

  ort_quantize.py qlinear OUTDIR
      onnxruntime's QLinearAdd and QLinearMul (com.microsoft) on every pair of int8 and of uint8
      codes, and on every code with a constant operand, for random parameters: the reference of
      the engine's emulation of their arithmetic. Writes OUTDIR/<case>.npy and manifest.json.

Every manifest entry names the model, the expected output file, and the scale of the
model's final QuantizeLinear (one LSB of the output).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

logging.getLogger().setLevel(logging.ERROR)


class Reader(CalibrationDataReader):
    """Feeds fixed batches to the calibrator."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        self.name, self.batches, self.index = name, batches, 0

    def get_next(self):
        if self.index >= len(self.batches):
            return None
        self.index += 1
        return {self.name: self.batches[self.index - 1]}


def quantize(src: Path, dst: Path, batches: list[np.ndarray], fmt: str, activations: str) -> None:
    name = onnx.load(str(src)).graph.input[0].name
    quantize_static(
        str(src), str(dst), Reader(name, batches),
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        activation_type=QuantType.QInt8 if activations == "s8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8, per_channel=True)


def output_scale(path: Path) -> float:
    """The scale of the DequantizeLinear that produces the graph output."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = model.graph.output[0].name
    for node in model.graph.node:
        if out in node.output and node.op_type == "DequantizeLinear":
            return float(inits[node.input[1]].reshape(-1)[0])
    raise SystemExit(f"{path}: the output is not produced by a DequantizeLinear")


def session(path: Path, optimize: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------
# Per-op cases


def weight(rng, *shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return (rng.standard_normal(shape) * (scale or np.sqrt(2.0 / fan_in))).astype(np.float32)


def conv(nodes, inits, rng, x, name, cin, cout, k=3, stride=1, group=1, bias=True):
    w = helper.make_tensor(f"{name}.w", TensorProto.FLOAT, (cout, cin // group, k, k),
                           weight(rng, cout, cin // group, k, k).ravel())
    inits.append(w)
    inputs = [x, w.name]
    if bias:
        b = numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.b")
        inits.append(b)
        inputs.append(b.name)
    nodes.append(helper.make_node("Conv", inputs, [name], name=name, kernel_shape=[k, k],
                                  pads=[k // 2] * 4, strides=[stride, stride], group=group))
    return name


def build_case(case: str, rng) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    nodes, inits = [], []
    shape = (2, 4, 12, 12)
    if case == "conv":
        y = conv(nodes, inits, rng, "input", "conv1", 4, 8)
        nodes.append(helper.make_node("Relu", [y], ["relu1"], name="relu1"))
        out = conv(nodes, inits, rng, "relu1", "dwconv", 8, 8, stride=2, group=8)
    elif case in ("gemm", "matmul"):
        shape = (4, 24)
        w = weight(rng, 16, 24) if case == "gemm" else weight(rng, 24, 16)
        inits.append(numpy_helper.from_array(w, "fc.w"))
        inits.append(numpy_helper.from_array((rng.standard_normal(16) * 0.1).astype(np.float32), "fc.b"))
        if case == "gemm":
            nodes.append(helper.make_node("Gemm", ["input", "fc.w", "fc.b"], ["output"], name="fc", transB=1))
        else:
            nodes.append(helper.make_node("MatMul", ["input", "fc.w"], ["mm"], name="fc"))
            nodes.append(helper.make_node("Add", ["mm", "fc.b"], ["output"], name="fc.add"))
        out = "output"
    elif case in ("add", "mul", "concat"):
        a = conv(nodes, inits, rng, "input", "a", 4, 6)
        b = conv(nodes, inits, rng, "input", "b", 4, 6)
        op = {"add": "Add", "mul": "Mul", "concat": "Concat"}[case]
        attrs = {"axis": 1} if case == "concat" else {}
        nodes.append(helper.make_node(op, [a, b], [case], name=case, **attrs))
        out = conv(nodes, inits, rng, case, "after", 12 if case == "concat" else 6, 4, k=1)
    elif case in ("avgpool", "maxpool", "gap", "sigmoid", "leakyrelu"):
        y = conv(nodes, inits, rng, "input", "conv1", 4, 8)
        if case == "avgpool":
            nodes.append(helper.make_node("AveragePool", [y], [case], name=case, kernel_shape=[3, 3],
                                          strides=[2, 2], pads=[1, 1, 1, 1]))
        elif case == "maxpool":
            nodes.append(helper.make_node("MaxPool", [y], [case], name=case, kernel_shape=[3, 3],
                                          strides=[2, 2], pads=[1, 1, 1, 1]))
        elif case == "gap":
            nodes.append(helper.make_node("GlobalAveragePool", [y], [case], name=case))
        elif case == "sigmoid":
            nodes.append(helper.make_node("Sigmoid", [y], [case], name=case))
        else:
            nodes.append(helper.make_node("LeakyRelu", [y], [case], name=case, alpha=0.1))
        out = conv(nodes, inits, rng, case, "after", 8, 4, k=1)
    else:
        raise SystemExit(f"unknown case {case}")
    graph = helper.make_graph(
        nodes, case, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape[1:]])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N"] + [None] * (len(shape) - 1))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, shape


CASES = ["conv", "gemm", "matmul", "add", "mul", "concat", "avgpool", "maxpool", "gap", "sigmoid",
         "leakyrelu"]


def ops(out: Path) -> None:
    manifest = []
    for case in CASES:
        rng = np.random.default_rng(CASES.index(case))
        model, shape = build_case(case, rng)
        calibration = [rng.standard_normal(shape).astype(np.float32) for _ in range(8)]
        test = rng.standard_normal(shape).astype(np.float32) * 1.2
        for fmt in ("qdq", "qop"):
            for activations in ("u8", "s8"):
                name = f"{case}-{fmt}-{activations}"
                directory = out / name
                directory.mkdir(parents=True, exist_ok=True)
                src = directory / "float.onnx"
                onnx.save(model, str(src))
                dst = directory / "model.onnx"
                quantize(src, dst, calibration, fmt, activations)
                result = session(dst).run(None, {"input": test})[0]
                # The model's definition (no fusions): what onnxruntime computes before its
                # graph optimisations swap in fused integer kernels.
                definition = session(dst, optimize=False).run(None, {"input": test})[0]
                np.save(directory / "input.npy", test)
                np.save(directory / "output.npy", result.astype(np.float32))
                np.save(directory / "definition.npy", definition.astype(np.float32))
                ops = sorted({f"{n.domain + ':' if n.domain else ''}{n.op_type}"
                              for n in onnx.load(str(dst)).graph.node})
                manifest.append({"name": name, "case": case, "format": fmt, "activations": activations,
                                 "directory": name, "outputScale": output_scale(dst), "ops": ops})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


# ---------------------------------------------------------------------------------------------
# Whole models


def cache_key(inputs: Path, calibration_count: int, specs: list[str], batch: int) -> str:
    """A digest of everything the models and outputs depend on: this script, the onnx and
    onnxruntime versions, the images, the float models and the arguments."""
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    digest.update(f"{onnx.__version__} {ort.__version__} {calibration_count} {batch}".encode())
    for path in [inputs] + [Path(spec.split("=", 1)[1]) for spec in specs]:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                digest.update(chunk)
    digest.update(" ".join(spec.split("=", 1)[0] for spec in specs).encode())
    return digest.hexdigest()[:24]


def models(out: Path, inputs: Path, calibration_count: int, specs: list[str], batch: int,
           cache: Path | None = None) -> None:
    if cache is not None:
        # Quantising and running onnxruntime on every image takes minutes on a loaded machine;
        # the result depends only on what the key digests, so reuse it when that is unchanged.
        entry = cache / cache_key(inputs, calibration_count, specs, batch)
        if not (entry / "manifest.json").exists():
            entry.mkdir(parents=True, exist_ok=True)
            models(entry, inputs, calibration_count, specs, batch)
        for item in entry.iterdir():
            target = out / item.name
            if target.exists() or target.is_symlink():
                target.unlink()
            target.symlink_to(item)
        return
    images = np.load(inputs, mmap_mode="r")
    calibration = [np.ascontiguousarray(images[i:i + 1]) for i in range(min(calibration_count, len(images)))]
    manifest = []
    for spec in specs:
        name, src = spec.split("=", 1)
        for fmt, activations in (("qdq", "s8"), ("qop", "u8")):
            dst = out / f"{name}-{fmt}.onnx"
            quantize(Path(src), dst, calibration, fmt, activations)
            entry = {"name": f"{name}-{fmt}", "model": dst.name, "format": fmt,
                     "activations": activations, "outputScale": output_scale(dst)}
            # onnxruntime as users run it (all graph optimisations) and the model's definition
            # (none: every QDQ op in float between its Q/DQ nodes, every QOperator op as is).
            for key, optimize in (("expected", True), ("definition", False)):
                s = session(dst, optimize=optimize)
                input_name = s.get_inputs()[0].name
                results = []
                for start in range(0, len(images), batch):
                    chunk = np.ascontiguousarray(images[start:start + batch])
                    results.append(s.run(None, {input_name: chunk})[0])
                path = out / f"{name}-{fmt}{'' if optimize else '-definition'}.npy"
                np.save(path, np.concatenate(results).astype(np.float32))
                entry[key] = path.name
            manifest.append(entry)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


# ---------------------------------------------------------------------------------------------
# QLinearAdd / QLinearMul arithmetic


def qlinear(out: Path) -> None:
    """Every pair of 8-bit codes through onnxruntime's QLinearAdd and QLinearMul (and every code
    against a constant one-element operand), for random scales and zero points."""
    rng = np.random.default_rng(7)
    manifest = []
    for dtype, proto in ((np.uint8, TensorProto.UINT8), (np.int8, TensorProto.INT8)):
        info = np.iinfo(dtype)
        codes = np.arange(info.min, info.max + 1)
        grid_a, grid_b = (x.ravel().astype(dtype) for x in np.meshgrid(codes, codes))
        for op in ("QLinearAdd", "QLinearMul"):
            for trial in range(3):
                scales = [float(np.float32(x)) for x in rng.uniform(0.004, 0.3, 3)]
                zeros = [int(x) for x in rng.integers(info.min, info.max + 1, 3)]
                constant = int(rng.integers(info.min, info.max + 1))
                for scalar in (False, True):
                    a = codes.astype(dtype) if scalar else grid_a
                    inits = [numpy_helper.from_array(np.array(v, np.float32), n)
                             for v, n in zip(scales, ("sa", "sb", "sc"))]
                    inits += [numpy_helper.from_array(np.array(v, dtype), n)
                              for v, n in zip(zeros, ("za", "zb", "zc"))]
                    inputs = [helper.make_tensor_value_info("a", proto, [len(a)])]
                    if scalar:
                        inits.append(numpy_helper.from_array(np.array([constant], dtype), "b"))
                    else:
                        inputs.append(helper.make_tensor_value_info("b", proto, [len(a)]))
                    node = helper.make_node(op, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"],
                                            domain="com.microsoft")
                    graph = helper.make_graph([node], op, inputs,
                                              [helper.make_tensor_value_info("c", proto, [len(a)])], inits)
                    model = helper.make_model(graph, opset_imports=[
                        helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
                    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
                    feed = {"a": a} if scalar else {"a": a, "b": grid_b}
                    c = s.run(None, feed)[0]
                    name = f"{op}-{dtype.__name__}-{trial}{'-scalar' if scalar else ''}"
                    np.save(out / f"{name}.npy", c.astype(np.int32))
                    manifest.append({"name": name, "op": op, "type": dtype.__name__, "scalar": scalar,
                                     "scales": scales, "zeroPoints": zeros, "constant": constant})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_ops = sub.add_parser("ops")
    p_ops.add_argument("out", type=Path)
    sub.add_parser("qlinear").add_argument("out", type=Path)
    p_models = sub.add_parser("models")
    p_models.add_argument("out", type=Path)
    p_models.add_argument("--inputs", type=Path, required=True)
    p_models.add_argument("--calibration", type=int, default=32)
    p_models.add_argument("--batch", type=int, default=20)
    p_models.add_argument("--cache", type=Path, help="reuse results keyed by a content digest")
    p_models.add_argument("specs", nargs="+", help="NAME=float-model.onnx")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "ops":
        ops(args.out)
    elif args.command == "qlinear":
        qlinear(args.out)
    else:
        models(args.out, args.inputs, args.calibration, args.specs, args.batch, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
