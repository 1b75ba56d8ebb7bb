#!/usr/bin/env bash
# Configures and builds the release preset (ccache and a precompiled header keep rebuilds
# short). Arguments are passed to `cmake --build`, e.g. `--target attnseg_cli`. On a terminal
# ninja shows its one-line status; elsewhere its lines go to build/release/build.log and one
# line sums the build up (a failed build shows its errors).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake --preset release >/dev/null
if [ -t 1 ]; then
  exec cmake --build --preset release "$@"
fi
log=build/release/build.log
start=$SECONDS
if cmake --build --preset release "$@" >"$log" 2>&1; then
  steps=$(grep -c '^\[[0-9]*/[0-9]*\]' "$log" || true)
  if [ "$steps" = 0 ]; then
    echo "build: up to date" >&2
  else
    echo "build: $steps steps in $((SECONDS - start)) s (ninja's output: $log)" >&2
  fi
else
  sed -n '/^FAILED:/,$p' "$log" | head -n 200 >&2
  echo "build: failed (ninja's output: $log)" >&2
  exit 1
fi
