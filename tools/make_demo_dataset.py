#!/usr/bin/env python3
"""Packs the 20 labelled ImageNet photos shipped in the foolbox 3.3.4 wheel into a WebDataset shard.

The wheel (MIT licence) holds ``foolbox/data/imagenet_<nn>_<class index>.jpg``. Each photo
becomes ``imagenet_<nn>.jpg`` plus ``imagenet_<nn>.cls`` (the class index as decimal text),
the two members of a key adjacent and the keys sorted. Every header field is fixed (mtime,
owner, mode, ustar format), so the same wheel always gives a byte-identical tar.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import tarfile
import zipfile
from pathlib import Path

MEMBER_PATTERN = re.compile(r"^foolbox/data/imagenet_(\d{2})_(\d{1,3})\.jpg$")
FIXED_MTIME = 1_577_836_800  # 2020-01-01T00:00:00Z; any constant keeps the output reproducible
EXPECTED_COUNT = 20


def read_photos(wheel: Path) -> list[tuple[str, int, bytes]]:
    """Returns (key, class index, JPEG bytes) for each ImageNet photo in the wheel, sorted by key."""
    photos = []
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            match = MEMBER_PATTERN.match(name)
            if match is None:
                continue
            label = int(match.group(2))
            if not 0 <= label < 1000:
                raise ValueError(f"{wheel}:{name}: class index {label} is outside 0..999")
            photos.append((f"imagenet_{match.group(1)}", label, archive.read(name)))
    photos.sort(key=lambda photo: photo[0])
    if len(photos) != EXPECTED_COUNT:
        raise ValueError(f"{wheel}: expected {EXPECTED_COUNT} ImageNet photos, found {len(photos)}")
    return photos


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_shard(photos: list[tuple[str, int, bytes]], out: Path) -> str:
    """Writes the shard atomically and returns its SHA-256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, label, jpeg in photos:
            _add(tar, f"{key}.jpg", jpeg)
            _add(tar, f"{key}.cls", str(label).encode("ascii"))
    data = buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="foolbox-3.3.4-py3-none-any.whl")
    parser.add_argument("--out", type=Path, required=True, help="output .tar path")
    args = parser.parse_args()
    try:
        photos = read_photos(args.wheel)
    except (ValueError, zipfile.BadZipFile, OSError) as error:
        print(f"make_demo_dataset.py: {error}", file=sys.stderr)
        return 1
    digest = write_shard(photos, args.out)
    print(f"wrote {args.out}: {len(photos)} photos, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
