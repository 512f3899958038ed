#!/usr/bin/env python3
"""Checks the generated FasterNet models with onnx.checker and onnxruntime.

For each variant: generates it at every requested opset with the same seed, validates each
model, runs it on a fixed random batch, and checks the outputs are finite, spread like a
classifier's logits, and identical across opsets (same weights, same function). Prints one
JSON line per variant; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from make_fasternet import calibration_images, write_model  # noqa: E402


def op_types(model: onnx.ModelProto) -> set[str]:
    return {node.op_type for node in model.graph.node}


def check_variant(variant: str, opsets: list[int], seed: int, work: Path, batch: np.ndarray) -> dict:
    """Returns a summary dict; raises AssertionError with a reason on failure."""
    outputs, report = {}, {"variant": variant}
    for opset in opsets:
        path = work / f"fasternet-{variant}-opset{opset}.onnx"
        unfolded, folded = write_model(variant, opset, seed, path)
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        ops = op_types(model)
        split = next(n for n in model.graph.node if n.op_type == "Split")
        if opset < 13:
            assert any(a.name == "split" for a in split.attribute), "opset<13 Split needs the attribute"
        else:
            assert len(split.input) == 2, "opset>=13 Split takes sizes as an input"
        if variant in ("t0", "t1"):
            assert ("Gelu" in ops) == (opset >= 20), f"opset {opset}: Gelu op use is wrong ({sorted(ops)})"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        logits = session.run(["logits"], {"input": batch})[0]
        assert logits.shape == (batch.shape[0], 1000), f"logits shape {logits.shape}"
        assert np.isfinite(logits).all(), f"opset {opset}: non-finite logits"
        outputs[opset] = logits
        report["parameters"] = unfolded
        report["parameters_folded"] = folded
    reference = outputs[opsets[0]]
    spread = float(reference.std(axis=1).mean())
    assert 0.5 < spread < 50.0, f"logit spread {spread} is not classifier-like"
    distinct_top1 = len(set(reference.argmax(axis=1).tolist()))
    assert distinct_top1 > 1, "every image gets the same class: the logits ignore the input"
    max_diff = max(float(np.abs(outputs[o] - reference).max()) for o in opsets)
    assert max_diff < 1e-3 * max(1.0, float(np.abs(reference).max())), f"opsets disagree by {max_diff}"
    report.update(
        opsets=opsets, logit_std=round(spread, 3), logit_absmax=round(float(np.abs(reference).max()), 3),
        distinct_top1=distinct_top1, max_opset_diff=max_diff,
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="t0,t1,t2,s")
    parser.add_argument("--opsets", default="11,13,20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    # Smooth random images scaled like normalised photos, from a seed the calibration never uses.
    batch = calibration_images(args.batch, seed=1234)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            try:
                report = check_variant(variant, [int(o) for o in args.opsets.split(",")], args.seed, Path(tmp), batch)
            except AssertionError as error:
                report, failed = {"variant": variant, "error": str(error)}, True
            print(json.dumps(report), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
