#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need (idempotent; root or sudo).
set -euo pipefail
# chromium renders report.html headless in the report test.
packages=(pkg-config libturbojpeg0-dev libarchive-dev libdnnl-dev python3-venv chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup-system: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
