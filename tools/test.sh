#!/usr/bin/env bash
# The README's second command (and exactly what CI runs): install, build, run every test
# that needs no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh
ctest --preset release -j "$(nproc)"
