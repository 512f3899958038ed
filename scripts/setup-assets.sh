#!/usr/bin/env bash
# Fetches and converts the demo assets (filled in by the asset tooling).
set -euo pipefail
