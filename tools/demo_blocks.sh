#!/usr/bin/env bash
# Each named block in the demo at 640x480, headless, on the quick sweep's seed-0 checkpoints
# (README, "Sequence blocks"; a block without one gets a 10-iteration model): every frame of a 40-frame image sequence of moving shapes is
# segmented and written, and the demo's own summary lines are printed, per block. A block
# with memory across frames (compressive) runs a second time with --temporal.
#   tools/demo_blocks.sh [SWEEP_DIR] [BLOCKS]   (defaults: results/beacon, the 23 sequence blocks)
set -euo pipefail
cd "$(dirname "$0")/.."
sweep=${1:-results/beacon}
blocks=${2:-linear,performer,linformer,memory_compressed,synthesizer,reformer,routing,clustered,sinkhorn,product_key,compressive,sac,sparse_transformer,longformer,bigbird,etc,star,bp_transformer,diet,multiscale,jukebox,gmat,handcrafted}
binary=build/release/attnseg
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for i in $(seq 0 39); do
  convert -size 640x480 xc:'rgb(90,90,90)' -fill 'rgb(200,200,200)' \
    -draw "circle $((40 + 12 * i)),240 $((70 + 12 * i)),240" -fill 'rgb(220,160,40)' \
    -draw "rectangle $((600 - 10 * i)),100 $((640 - 10 * i)),140" "$(printf "$scratch/f_%03d.bmp" "$i")"
done
for block in ${blocks//,/ }; do
  checkpoint=$(ls -v "$sweep/$block"/seed0/iter_*.pt 2>/dev/null | tail -1 || true)
  if [ -z "$checkpoint" ]; then
    # The sweep's reports are committed, its checkpoints are not: a 10-iteration model times
    # the same (its weights change what it draws, not how long it takes).
    echo "== $block: no checkpoint in $sweep/$block/seed0; training 10 iterations for the demo"
    "$binary" train "configs/${block}_r18_synthetic.yaml" --work-dir "$scratch/train_$block" \
      train.iters=10 train.checkpoint_interval=10 > /dev/null 2>&1
    checkpoint=$(ls -v "$scratch/train_$block"/iter_*.pt | tail -1)
  fi
  run=("$binary" demo "configs/${block}_r18_synthetic.yaml" --checkpoint "$checkpoint"
       --source "$scratch/f_%03d.bmp" --headless --output "$scratch/$block.mp4")
  echo "== $block"
  "${run[@]}" 2>&1 | grep -E "showed|per frame|error"
  if [ "$block" = compressive ]; then
    echo "== $block --temporal"
    "${run[@]}" --temporal 2>&1 | grep -E "showed|per frame|error"
  fi
done
