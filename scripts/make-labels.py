#!/usr/bin/env python3
"""Regenerates labels/ from two pinned Apache-2.0 PyPI wheels (downloaded, unzipped, never installed).

  tensorflow-datasets==4.9.10  tensorflow_datasets/datasets/imagenet2012/labels.txt
                               (the 1000 ImageNet-1k synsets in sorted class-index order)
                               tensorflow_datasets/datasets/imagenet2012/validation_labels.txt
                               (one synset per validation image, ILSVRC2012_val_00000001 first)
  timm==1.0.31                 timm/data/_info/imagenet_synset_to_lemma.txt
                               (synset <TAB> human-readable names, for all of WordNet's synsets)

Usage: scripts/make-labels.py [--wheels DIR]   (DIR: already-downloaded wheels, else pip download)
"""
import argparse
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "labels")
TFDS = ("tensorflow-datasets", "4.9.10", "tensorflow_datasets-4.9.10-py3-none-any.whl")
TIMM = ("timm", "1.0.31", "timm-1.0.31-py3-none-any.whl")


def fetch(wheel_dir):
    missing = [f"{n}=={v}" for n, v, f in (TFDS, TIMM) if not os.path.exists(os.path.join(wheel_dir, f))]
    if missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "-q", "-d", wheel_dir] + missing,
            check=True)


def member(wheel, name):
    with zipfile.ZipFile(wheel) as z:
        return z.read(name).decode("utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", help="directory holding (or receiving) the two wheels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = args.wheels or tmp
        fetch(wheel_dir)
        tfds = os.path.join(wheel_dir, TFDS[2])
        timm = os.path.join(wheel_dir, TIMM[2])
        synsets = member(tfds, "tensorflow_datasets/datasets/imagenet2012/labels.txt").split()
        val = member(tfds, "tensorflow_datasets/datasets/imagenet2012/validation_labels.txt").split()
        lemmas = {}
        for line in member(timm, "timm/data/_info/imagenet_synset_to_lemma.txt").splitlines():
            if line.strip():
                wnid, _, lemma = line.partition("\t")
                lemmas[wnid] = lemma.strip()

    # The class index is the position in sorted synset order; refuse anything else.
    if len(synsets) != 1000 or synsets != sorted(synsets) or len(set(synsets)) != 1000:
        sys.exit("labels.txt is not 1000 distinct sorted synsets")
    known = set(synsets)
    if len(val) != 50000 or any(s not in known for s in val):
        sys.exit("validation_labels.txt is not 50000 known synsets")
    missing = [s for s in synsets if s not in lemmas]
    if missing:
        sys.exit(f"no lemma for {missing[:5]}")

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "imagenet1k_synsets.txt"), "w") as f:
        f.writelines(s + "\n" for s in synsets)
    with open(os.path.join(OUT, "imagenet1k_class_names.txt"), "w") as f:
        f.writelines(f"{s}\t{lemmas[s]}\n" for s in synsets)
    with open(os.path.join(OUT, "ILSVRC2012_validation_ground_truth.txt"), "w") as f:
        f.writelines(s + "\n" for s in val)
    print(f"wrote {OUT}: 1000 synsets, 1000 names, 50000 validation labels", file=sys.stderr)


if __name__ == "__main__":
    main()
