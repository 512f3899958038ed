#!/usr/bin/env python3
"""Checks the converted EfficientNet-Lite0 against the published reference figure.

Runs ``models/efficientnet-lite0.onnx`` with onnxruntime on the 1300 real ILSVRC2012 images of
``../shared/datasets/ilsvrc2012-val-subset-1300.tar`` with Pillow preprocessing exactly as
torchvision does it (bilinear resize of the shorter side to 256, centre crop 224 with
torchvision's rounding, (x-127)/128), labels from ``../shared/labels/caffe_val.txt`` (or, for a WebDataset shard such as
``datasets/foolbox-imagenet-20.tar``, from its ``.cls`` members). Also
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
    """Yields (base name, JPEG bytes, label from a WebDataset `.cls` member or None).

    Flat ILSVRC tars have no `.cls` members; in a WebDataset shard the `.cls` of a key may come
    before or after its image, so images wait until their key is complete.
    """
    pending: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as archive:
        for member in archive:
            if not member.isfile():
                continue
            name = Path(member.name).name
            stem, _, ext = name.rpartition(".")
            ext = ext.lower()
            if ext not in ("jpeg", "jpg", "cls"):
                continue
            file = archive.extractfile(member)
            if file is None:
                continue
            entry = pending.setdefault(stem, {})
            entry[ext] = file.read()
            if ext != "cls":
                entry["name"] = name.encode()
    for stem, entry in pending.items():
        image = entry.get("jpg", entry.get("jpeg"))
        if image is None:
            raise ValueError(f"{path}: key {stem} has a .cls but no image")
        label = int(entry["cls"].decode().strip()) if "cls" in entry else None
        yield entry["name"].decode(), image, label


def parameter_count(model: onnx.ModelProto) -> int:
    """Elements of the non-scalar float initializers (weights and biases)."""
    return sum(
        int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) > 0 and t.data_type == 1
    )


def evaluate(
    model_path: Path, tar_path: Path, labels_path: Path | None, batch: int, with_predictions: bool = False
) -> dict:
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    labels = load_labels(labels_path) if labels_path is not None else {}
    top1 = top5 = count = 0
    names: list[str] = []
    targets: list[int] = []
    predictions: dict[str, int] = {}
    pending: list[np.ndarray] = []

    def flush() -> None:
        nonlocal top1, top5, count
        logits = session.run(["logits"], {"input": np.stack(pending)})[0]
        for name, label, row in zip(names, targets, logits):
            order = np.argsort(-row, kind="stable")
            predictions[name] = int(order[0])
            top1 += int(order[0] == label)
            top5 += int(label in order[:5])
            count += 1
        names.clear()
        targets.clear()
        pending.clear()

    for name, data, label in iterate_tar(tar_path):
        if label is None:
            if name not in labels:
                raise KeyError(f"{tar_path}: member {name} has no label in {labels_path}")
            label = labels[name]
        names.append(name)
        targets.append(label)
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
        **({"top1_predictions": predictions} if with_predictions else {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/efficientnet-lite0.onnx")
    parser.add_argument("--tar", type=Path, default=SHARED / "datasets/ilsvrc2012-val-subset-1300.tar")
    parser.add_argument(
        "--labels", type=Path, default=SHARED / "labels/caffe_val.txt",
        help="flat `name index` labels; ignored for members with a WebDataset .cls",
    )
    parser.add_argument("--predictions", action="store_true", help="also print each image's top-1 class")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--expect-top1", type=float)
    parser.add_argument("--expect-top5", type=float)
    args = parser.parse_args()
    labels = args.labels if args.labels.exists() else None
    result = evaluate(args.model, args.tar, labels, args.batch, args.predictions)
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
