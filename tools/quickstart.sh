#!/usr/bin/env bash
# The README's first command: install, build, write the synthetic dataset, train the default
# model (ResNet-18 + criss-cross attention) on the CPU budget, evaluate it.
# Extra arguments are config overrides for training, e.g. train.iters=200.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh --target attnseg_cli
bin=build/release/attnseg
config=configs/ccnet_r18_synthetic.yaml
work=work_dirs/ccnet_r18_synthetic
[ -f data/synthetic/val.txt ] || "$bin" synth --out data/synthetic
"$bin" train "$config" --work-dir "$work" "$@"
"$bin" eval "$config" --checkpoint "$work/$(cat "$work/last_checkpoint")" --json "$work/eval.json" "$@"
