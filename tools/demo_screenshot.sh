#!/usr/bin/env bash
# The README's picture of the demo window: runs `attnseg demo` under Xvfb on a synthetic
# scene with the quick sweep's none, ccnet and nonlocal checkpoints, switches from none to
# ccnet with `n`, clicks a disc, and grabs the window.
#   tools/demo_screenshot.sh [SWEEP_DIR] [OUT.png]   (defaults: work_dirs/quick_sweep docs/demo_window.png)
set -euo pipefail
cd "$(dirname "$0")/.."
sweep=${1:-work_dirs/quick_sweep}
out=${2:-docs/demo_window.png}
binary=build/release/attnseg
last_checkpoint() {
  local c
  c=$(ls -v "$sweep/$1"/seed0/iter_*.pt 2>/dev/null | tail -1)
  [ -n "$c" ] || { echo "demo_screenshot: no checkpoint of $1 under $sweep/$1/seed0 (run tools/quickstart.sh)" >&2; exit 1; }
  echo "$c"
}
none=$(last_checkpoint none)
ccnet=$(last_checkpoint ccnet)
nonlocal=$(last_checkpoint nonlocal)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# scene 5 of this seed: cool beacon on the left, two discs on the right
"$binary" synth --out "$scratch/synth" --train 1 --val 8 --seed 7 >/dev/null 2>&1
cat >"$scratch/drive.sh" <<SCRIPT
"$binary" demo configs/none_r18_synthetic.yaml --checkpoint "$none" \
  --blocks ccnet="$ccnet",nonlocal="$nonlocal" \
  --source "$scratch/synth/images/val_00005.png" --loop --save-dir "$scratch/saves" &
demo=\$!
w=\$(timeout 120 xdotool search --sync --name 'attnseg demo' | head -1)
sleep 1
xdotool key --window \$w n                                # none -> ccnet
sleep 1
xdotool mousemove --window \$w 684 28 click 1             # the upper disc (frame pixel 342, 14)
sleep 2
import -window \$w "$scratch/window.png"
xdotool key --window \$w q
wait \$demo
SCRIPT
xvfb-run -a -s '-screen 0 1280x720x24' bash "$scratch/drive.sh"
mv "$scratch/window.png" "$out"
echo "wrote $out"
