#!/usr/bin/env python3
"""Independent decode reference: Pillow opens each JPEG, converts to RGB as torchvision's
default loader does (`Image.open(f).convert("RGB")`), and writes the raw interleaved bytes.

Usage: pillow_decode.py IN.jpg OUT.rgb [IN2.jpg OUT2.rgb ...]
Prints one line per image: `width height original-mode`.
"""
import sys

from PIL import Image

args = sys.argv[1:]
for source, target in zip(args[0::2], args[1::2]):
    with Image.open(source) as image:
        mode = image.mode
        rgb = image.convert("RGB")
    with open(target, "wb") as out:
        out.write(rgb.tobytes())
    print(rgb.width, rgb.height, mode)
