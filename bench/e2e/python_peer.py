#!/usr/bin/env python3
"""The Python peer of `imagenet-eval run`: the same job on the same tarball, timed end to end.

Reads a flat ILSVRC2012 tarball in order, decodes and preprocesses each JPEG with Pillow
exactly as torchvision does (bilinear shorter side 256, centre crop 224), normalises with the
preset's mean/std, batches 16 images and runs onnxruntime (CPU, --threads intra-op threads),
then scores top-1/top-5 against caffe_val.txt. Preprocessing of a batch runs on a thread pool
of --threads workers (Pillow releases the GIL while decoding and resizing); it does not
overlap with inference. Prints one JSON line: images, seconds, images/s, top-1, top-5.

With --int8 it does what `imagenet-eval run --engines float,int8 --calib-method max` does:
the first --calib-count images of the tar (same preprocessing) calibrate
onnxruntime.quantization.quantize_static (QDQ, int8 activations symmetric per tensor, int8
weights per channel, MinMax, i.e. max calibration), written to a temporary file; then every
batch is preprocessed once and run through the float and the int8 session. The calibration
(reading and preprocessing the calibration images, collecting ranges, writing the model,
creating the int8 session) is inside `seconds`, as imagenet-eval's calibration is inside its
process wall time; `calibration_seconds` and `evaluation_seconds` split it.
"""
import argparse
import io
import json
import os
import tarfile
import tempfile
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
    p.add_argument("--int8", action="store_true", help="also calibrate and run an int8 QDQ model")
    p.add_argument("--calib-count", type=int, default=100)
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
    sessions = [session]
    calibration_seconds = 0.0
    if a.int8:
        calibration_start = time.perf_counter()
        sessions.append(quantized_session(a, options, name, mean, std, pool))
        calibration_seconds = time.perf_counter() - calibration_start
    evaluation_start = time.perf_counter()
    top1 = [0] * len(sessions)
    top5 = [0] * len(sessions)
    images = 0
    pending: list[tuple[str, bytes]] = []

    def flush() -> None:
        nonlocal images
        batch = np.stack(list(pool.map(lambda item: preprocess(item[1], mean, std), pending)))
        for k, s in enumerate(sessions):
            logits = s.run(None, {name: batch})[0].reshape(len(pending), -1)
            order = np.argsort(-logits, axis=1, kind="stable")[:, :5]
            for (member, _), best in zip(pending, order):
                label = labels[Path(member).name]
                top1[k] += int(best[0] == label)
                top5[k] += int(label in best)
        images += len(pending)
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
    end = time.perf_counter()
    seconds = end - start
    result = {
        "images": images, "seconds": seconds, "images_per_second": images / seconds,
        "top1": 100 * top1[0] / images, "top5": 100 * top5[0] / images,
        "evaluation_seconds": end - evaluation_start, "calibration_seconds": calibration_seconds,
        "onnxruntime": ort.__version__, "threads": a.threads,
    }
    if a.int8:
        result["top1_int8"] = 100 * top1[1] / images
        result["top5_int8"] = 100 * top5[1] / images
        result["calib_count"] = a.calib_count
    print(json.dumps(result))


def quantized_session(a, options, name, mean, std, pool):
    """quantize_static on the first --calib-count images of the tar; returns the int8 session."""
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static)

    jpegs = []
    with tarfile.open(a.tar) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".JPEG"):
                jpegs.append(archive.extractfile(member).read())
                if len(jpegs) == a.calib_count:
                    break
    tensors = list(pool.map(lambda jpeg: preprocess(jpeg, mean, std), jpegs))
    batches = [np.stack(tensors[i:i + a.batch]) for i in range(0, len(tensors), a.batch)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(batches)

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {name: batch}

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "int8.onnx")
        quantize_static(
            a.model, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    main()
