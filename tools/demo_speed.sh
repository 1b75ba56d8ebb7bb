#!/usr/bin/env bash
# The demo's speed at 640x480 with the quick sweep's none and ccnet checkpoints (README,
# "attnseg demo"): each run prints the model's time per frame inside the demo beside reading,
# pre/post-processing, drawing and writing/display, the FPS shown and the latency from reading
# a frame to showing it, then (--compare) the bare model on the last frame in the same
# process with nothing else running, and the demo's overhead per frame against it.
#   headless:  every frame of a 100-frame 640x480 image sequence, none dropped;
#   realtime:  the same read at 25 FPS like a camera, late frames dropped;
#   window:    the window under Xvfb, read at 25 FPS.
#   tools/demo_speed.sh [SWEEP_DIR]   (default work_dirs/quick_sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
sweep=${1:-work_dirs/quick_sweep}
binary=build/release/attnseg
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# 100 frames of two shapes moving over a grey field; an image sequence claims no frame rate,
# so the demo reads it at 25 FPS when paced. BMP: decoding costs about what a camera frame
# does (PNG took 10-16 ms a frame here, stolen from the model on 2 cores)
for i in $(seq 0 99); do
  convert -size 640x480 xc:'rgb(90,90,90)' -fill 'rgb(200,200,200)' \
    -draw "circle $((40 + 5 * i)),240 $((70 + 5 * i)),240" -fill 'rgb(220,160,40)' \
    -draw "rectangle $((600 - 4 * i)),100 $((640 - 4 * i)),140" "$(printf "$scratch/f_%03d.bmp" "$i")"
done
for block in none ccnet; do
  checkpoint=$(ls -v "$sweep/$block"/seed0/iter_*.pt | tail -1)
  run=("$binary" demo "configs/${block}_r18_synthetic.yaml" --checkpoint "$checkpoint" --source "$scratch/f_%03d.bmp" --compare 20)
  echo "== $block, headless (every frame)"
  "${run[@]}" --headless --output "$scratch/$block.mp4" 2>&1 | grep -E "showed|per frame|bare"
  echo "== $block, headless --realtime (25 FPS source)"
  "${run[@]}" --headless --realtime --output "$scratch/$block.rt.mp4" 2>&1 | grep -E "showed|per frame|bare"
  echo "== $block, window under Xvfb (25 FPS source)"
  xvfb-run -a -s '-screen 0 1280x720x24' "${run[@]}" 2>&1 | grep -E "showed|per frame|bare"
done
