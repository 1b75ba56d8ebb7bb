#!/usr/bin/env bash
# The README's first command: install, build, write the synthetic dataset, then a quick sweep:
# six blocks trained alike (ResNet-18, 2000 iterations at batch 4), evaluated and benchmarked,
# the leaderboard printed and written with its two pictures to work_dirs/quick_sweep/.
# A killed run resumes where it stopped. Extra arguments go to `attnseg sweep`, e.g.
# --blocks all, --seeds 3, or a config override such as train.iters=500.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh --target attnseg_cli
bin=build/release/attnseg
[ -f data/synthetic/val.txt ] || "$bin" synth --out data/synthetic
"$bin" sweep configs/quick_sweep_r18_synthetic.yaml --blocks none,nonlocal,ccnet,cbam,gcnet,isa \
  --work-dir work_dirs/quick_sweep "$@"
