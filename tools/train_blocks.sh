#!/usr/bin/env bash
# Trains and evaluates each block's synthetic config at the default budget, one after the
# other, writing work_dirs/<block>_r18_synthetic/ (checkpoints, metrics.jsonl, eval.json:
# the README block table's mIoU column). A block whose eval.json exists is skipped, and one
# whose training stopped part-way is resumed; --force removes the earlier run and trains again.
# Prints one line per block.
#   tools/train_blocks.sh [--blocks LIST|all] [--force] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=all force=0 overrides=()
while (($#)); do
  case "$1" in
    --blocks) blocks=$2; shift 2 ;;
    --force) force=1; shift ;;
    *=*) overrides+=("$1"); shift ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
tools/build.sh --target attnseg_cli
bin=build/release/attnseg
mkdir -p work_dirs
[ -f data/synthetic/val.txt ] || "$bin" synth --out data/synthetic
if [ "$blocks" = all ]; then blocks=$("$bin" list | awk 'NR > 1 {print $1}' | paste -sd, -); fi
for b in ${blocks//,/ }; do
  config=configs/${b}_r18_synthetic.yaml work=work_dirs/${b}_r18_synthetic
  [ -f "$config" ] || { echo "error: no synthetic config $config for block '$b'" >&2; exit 2; }
  if [ "$force" = 0 ] && [ -f "$work/eval.json" ]; then echo "$b: $work/eval.json exists, skipped"; continue; fi
  # attnseg refuses to train from iteration 0 over an earlier run's checkpoints.
  if [ "$force" = 1 ]; then rm -rf "$work"; fi
  start=$(date +%s)
  "$bin" train "$config" --work-dir "$work" --resume "${overrides[@]}" > "$work.train.log" 2>&1 ||
    { echo "error: training $b failed, see $work.train.log" >&2; exit 1; }
  "$bin" eval "$config" --checkpoint "$work/$(cat "$work/last_checkpoint")" --json "$work/eval.json" \
    "${overrides[@]}" > "$work.eval.log" 2>&1 ||
    { echo "error: evaluating $b failed, see $work.eval.log" >&2; exit 1; }
  echo "$b: $(grep -o 'mIoU *[0-9.]*' "$work.eval.log") after $(($(date +%s) - start)) s (logs $work.*.log)"
done
