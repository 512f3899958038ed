#!/usr/bin/env python3
"""The Python peer of `imagenet-eval run`: the same job on the same tarball, timed end to end.

Reads a flat ILSVRC2012 tarball in order, decodes and preprocesses each JPEG with Pillow
exactly as torchvision does (bilinear shorter side 256, centre crop 224), normalises with the
preset's mean/std, batches 16 images and runs onnxruntime (CPU, --threads intra-op threads),
then scores top-1/top-5 against caffe_val.txt. Preprocessing of a batch runs on a thread pool
of --threads workers (Pillow releases the GIL while decoding and resizing); it does not
overlap with inference. Prints one JSON line: images, seconds, images/s, top-1, top-5.

Only the float model is run: the int8 (QDQ, onnxruntime.quantization.quantize_static) column
is added when imagenet-eval has an int8 engine to compare with.
"""
import argparse
import io
import json
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

PRESETS = {
    # mean, std on the 0-255 scale
    "torchvision": ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
    "efficientnet-lite": ([127.0, 127.0, 127.0], [128.0, 128.0, 128.0]),
}


def preprocess(jpeg: bytes, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    w, h = image.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    image = image.crop((left, top, left + 224, top + 224))
    x = (np.asarray(image, dtype=np.float32) - mean) / std
    return x.transpose(2, 0, 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tar", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--preset", default="torchvision", choices=sorted(PRESETS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    a = p.parse_args()
    mean, std = (np.asarray(v, dtype=np.float32) for v in PRESETS[a.preset])
    labels = {}
    for line in Path(a.labels).read_text().splitlines():
        if line.strip():
            name, index = line.split()
            labels[name] = int(index)
    start = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    pool = ThreadPoolExecutor(a.threads)
    top1 = top5 = images = 0
    pending: list[tuple[str, bytes]] = []

    def flush() -> None:
        nonlocal top1, top5, images
        tensors = list(pool.map(lambda item: preprocess(item[1], mean, std), pending))
        logits = session.run(None, {name: np.stack(tensors)})[0].reshape(len(pending), -1)
        order = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        for (member, _), best in zip(pending, order):
            label = labels[Path(member).name]
            top1 += int(best[0] == label)
            top5 += int(label in best)
            images += 1
        pending.clear()

    with tarfile.open(a.tar) as archive:
        for member in archive:
            if not member.isfile() or not member.name.endswith(".JPEG"):
                continue
            pending.append((member.name, archive.extractfile(member).read()))
            if len(pending) == a.batch:
                flush()
    if pending:
        flush()
    seconds = time.perf_counter() - start
    print(json.dumps({
        "images": images, "seconds": seconds, "images_per_second": images / seconds,
        "top1": 100 * top1 / images, "top5": 100 * top5 / images,
        "onnxruntime": ort.__version__, "threads": a.threads,
    }))


if __name__ == "__main__":
    main()
