#!/usr/bin/env python3
"""Checks the converted EfficientNet-Lite0 against the published reference figure.

Runs ``models/efficientnet-lite0.onnx`` with onnxruntime on the 1300 real ILSVRC2012 images of
``../shared/datasets/ilsvrc2012-val-subset-1300.tar`` with Pillow preprocessing exactly as
torchvision does it (bilinear resize of the shorter side to 256, centre crop 224 with
torchvision's rounding, (x-127)/128), labels from ``../shared/labels/caffe_val.txt``. Also
validates the model with ``onnx.checker`` and counts its parameters. Prints one JSON line and
exits non-zero when top-1/top-5 differ from --expect-top1/--expect-top5 (when given).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def load_labels(path: Path) -> dict[str, int]:
    """Reads `ILSVRC2012_val_00000001.JPEG 65` lines into {file name: class index}."""
    labels = {}
    for line_number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{line_number}: expected `name index`, got {line!r}")
        labels[parts[0]] = int(parts[1])
    return labels


def preprocess(jpeg: bytes, resize: int = 256, crop: int = 224) -> np.ndarray:
    """torchvision Resize(resize) + CenterCrop(crop) on a PIL image, then (x-127)/128, CHW."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    w, h = image.size
    # torchvision: the shorter side becomes `resize`, the longer one int(resize * long / short).
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    top = int(round((h - crop) / 2.0))
    left = int(round((w - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    x = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)


def iterate_tar(path: Path):
    """Yields (base name, bytes) for each regular JPEG member in archive order."""
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isfile() and member.name.lower().endswith((".jpeg", ".jpg")):
                file = archive.extractfile(member)
                if file is not None:
                    yield Path(member.name).name, file.read()


def parameter_count(model: onnx.ModelProto) -> int:
    """Elements of the non-scalar float initializers (weights and biases)."""
    return sum(
        int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) > 0 and t.data_type == 1
    )


def evaluate(model_path: Path, tar_path: Path, labels_path: Path, batch: int) -> dict:
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    labels = load_labels(labels_path)
    top1 = top5 = count = 0
    names: list[str] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        nonlocal top1, top5, count
        logits = session.run(["logits"], {"input": np.stack(pending)})[0]
        for name, row in zip(names, logits):
            label = labels[name]
            order = np.argsort(-row, kind="stable")
            top1 += int(order[0] == label)
            top5 += int(label in order[:5])
            count += 1
        names.clear()
        pending.clear()

    for name, data in iterate_tar(tar_path):
        if name not in labels:
            raise KeyError(f"{tar_path}: member {name} has no label in {labels_path}")
        names.append(name)
        pending.append(preprocess(data))
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return {
        "images": count,
        "top1_correct": top1,
        "top5_correct": top5,
        "top1": round(100.0 * top1 / count, 2),
        "top5": round(100.0 * top5 / count, 2),
        "parameters": parameter_count(model),
        "onnxruntime": ort.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/efficientnet-lite0.onnx")
    parser.add_argument("--tar", type=Path, default=SHARED / "datasets/ilsvrc2012-val-subset-1300.tar")
    parser.add_argument("--labels", type=Path, default=SHARED / "labels/caffe_val.txt")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--expect-top1", type=float)
    parser.add_argument("--expect-top5", type=float)
    args = parser.parse_args()
    result = evaluate(args.model, args.tar, args.labels, args.batch)
    print(json.dumps(result))
    ok = (args.expect_top1 is None or result["top1"] == args.expect_top1) and (
        args.expect_top5 is None or result["top5"] == args.expect_top5
    )
    if not ok:
        print(
            f"mismatch: top-1 {result['top1']} top-5 {result['top5']}, expected "
            f"{args.expect_top1} / {args.expect_top5}",
            file=sys.stderr,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
