#!/usr/bin/env bash
# Creates .venv with the pinned reference libraries (Pillow, OpenCV, onnxruntime) from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.requirements
if [ ! -x .venv/bin/python ] || ! cmp -s scripts/requirements.txt "$stamp"; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt "$stamp"
fi
