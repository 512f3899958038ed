#!/usr/bin/env python3
"""Pillow side of the preprocessing benchmark (torchvision preset: Resize(256) bilinear,
CenterCrop(224), ToTensor + Normalize, written out in PIL/numpy as in
scripts/reference/preprocess_reference.py).

  pillow_peer.py stack TAR OUT.npy [LIMIT]   decode the tar's JPEGs with Pillow into one
                                             (N, H, W, 3) uint8 stack (all must share a size)
  pillow_peer.py kernel STACK.npy            time resize+crop+normalise only, 1 and 2 processes
  pillow_peer.py full TAR                    time decode+resize+crop+normalise, 1 and 2 processes

Prints one line per measurement: `pillow <what> threads=<n> images=<count> seconds=<s>
images_per_s=<r>`.
"""
import io
import subprocess
import sys
import tarfile
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def torchvision(img):
    w, h = img.size
    if w <= h:
        nw, nh = 256, int(256 * h / w)
    else:
        nw, nh = int(256 * w / h), 256
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    x = np.asarray(img, dtype=np.float32) / np.float32(255)
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(2, 0, 1))


def read_jpegs(tar_path):
    with tarfile.open(tar_path) as tar:
        return [tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()]


def run_range(mode, path, lo, hi):
    if mode == "kernel":
        stack = np.load(path, mmap_mode="r")
        images = [np.array(stack[i]) for i in range(lo, hi)]
        return lambda: [torchvision(Image.fromarray(a)) for a in images]
    blobs = read_jpegs(path)[lo:hi]
    return lambda: [torchvision(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]


def count_images(mode, path):
    return len(np.load(path, mmap_mode="r")) if mode == "kernel" else len(read_jpegs(path))


def measure(mode, path, label):
    """1 worker in-process, then 2 worker processes (no fork of a threaded parent, which can
    deadlock) started on a common wall-clock instant; time = last finish - start."""
    n = count_images(mode, path)
    work = run_range(mode, path, 0, n)
    start = time.time()
    work()
    seconds = time.time() - start
    report(label, 1, n, seconds)
    start_at = time.time() + 3.0
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "part", mode, path, str(lo), str(hi), repr(start_at)],
            stdout=subprocess.PIPE, text=True,
        )
        for lo, hi in ((0, n // 2), (n // 2, n))
    ]
    ends = [float(child.communicate()[0].strip()) for child in children]
    if any(child.returncode for child in children):
        raise SystemExit("a worker process failed")
    report(label, 2, n, max(ends) - start_at)


def report(label, threads, count, seconds):
    print(
        f"pillow {label} threads={threads} images={count} seconds={seconds:.3f} "
        f"images_per_s={count / seconds:.1f}",
        flush=True,
    )


def main():
    mode = sys.argv[1]
    if mode == "stack":
        blobs = read_jpegs(sys.argv[2])
        limit = int(sys.argv[4]) if len(sys.argv) > 4 else len(blobs)
        images = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs[:limit]]
        np.save(sys.argv[3], np.stack(images))
        print(f"stacked {len(images)} images of {images[0].shape}")
    elif mode == "kernel":
        measure("kernel", sys.argv[2], "kernel")
    elif mode == "full":
        measure("full", sys.argv[2], "decode+preprocess")
    elif mode == "part":
        work = run_range(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        time.sleep(max(0.0, float(sys.argv[6]) - time.time()))
        work()
        print(time.time())
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
