#!/usr/bin/env bash
# Configures and builds the release preset (ccache and a precompiled header keep rebuilds
# short). Arguments are passed to `cmake --build`, e.g. `--target attnseg_cli`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release "$@"
