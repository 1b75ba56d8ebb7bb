#!/usr/bin/env bash
# The README's second command (and exactly what CI runs): install, build, run the default
# suite (every test that needs neither a GPU nor minutes of training). `--slow` adds the tests
# labelled slow, which train the default models for real (about 15 minutes here).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=release
if [ "${1:-}" = "--slow" ]; then
  preset=all
elif [ $# -gt 0 ]; then
  echo "usage: tools/test.sh [--slow]" >&2
  exit 2
fi
tools/build.sh
ctest --preset "$preset" -j "$(nproc)"
