#!/usr/bin/env python3
"""Pillow peer for bench/preprocess: the torchvision eval recipe written with PIL and numpy.

Usage: pillow_peer.py ARCHIVE.tar [--processes N] [--split]

Every process opens the tar itself and handles members i, i+N, i+2N, ... (as
`imagenet-eval --shard` would), so tar reading is part of the measurement on both sides. Per
image: PIL decode + convert("RGB"), resize the shorter side to 256 (BILINEAR, long side
int(256 * long / short) as torchvision), centre crop 224 (torchvision rounding), x / 255,
(x - mean) / std in float32, HWC -> CHW. The clock runs from before the processes start until
the last one is done, like `imagenet-eval inspect`'s images/s.

Prints one JSON object: images, seconds, images_per_second, processes; with --split (single
process only) also the seconds spent in decode, resize+crop and normalise.
"""
import argparse
import io
import json
import multiprocessing
import tarfile
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_SUFFIXES = (".jpeg", ".jpg")


def shorter_side(width, height, size=256):
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def work(job):
    archive, index, count, split = job
    timings = {"decode": 0.0, "resize_crop": 0.0, "normalise": 0.0}
    images = 0
    checksum = 0.0
    position = -1
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith(IMAGE_SUFFIXES):
                continue
            position += 1
            if position % count != index:
                continue
            data = tar.extractfile(member).read()
            t0 = time.perf_counter()
            image = Image.open(io.BytesIO(data)).convert("RGB")
            t1 = time.perf_counter()
            width, height = shorter_side(*image.size)
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            top, left = int(round((height - 224) / 2.0)), int(round((width - 224) / 2.0))
            image = image.crop((left, top, left + 224, top + 224))
            t2 = time.perf_counter()
            x = np.asarray(image, dtype=np.float32) / np.float32(255)
            x = np.ascontiguousarray(((x - MEAN) / STD).transpose(2, 0, 1))
            t3 = time.perf_counter()
            if split:
                timings["decode"] += t1 - t0
                timings["resize_crop"] += t2 - t1
                timings["normalise"] += t3 - t2
            checksum += float(x[0, 0, 0])  # keep the result alive
            images += 1
    return images, timings, checksum


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--split", action="store_true")
    args = parser.parse_args()
    if args.split and args.processes != 1:
        parser.error("--split needs --processes 1")
    jobs = [(args.archive, i, args.processes, args.split) for i in range(args.processes)]
    start = time.perf_counter()
    if args.processes == 1:
        results = [work(jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(args.processes) as pool:
            results = pool.map(work, jobs)
    seconds = time.perf_counter() - start
    images = sum(r[0] for r in results)
    report = {
        "images": images,
        "seconds": seconds,
        "images_per_second": images / seconds,
        "processes": args.processes,
    }
    if args.split:
        report["split_seconds"] = results[0][1]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
