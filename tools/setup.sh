#!/usr/bin/env bash
# Installs what attnseg needs from Debian 12's archive; does nothing when all is present.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache
  libtorch-dev libopenblas0-pthread   # OpenBLAS: the reference BLAS ran matmul 20x slower
  libblas3                            # that reference BLAS: the test of the warning attnseg gives when it is loaded
  libgloo-dev                         # c10d's Gloo process group headers: multi-process training
  libopenblas0-openmp                 # the build attnseg loads: it shares LibTorch's OpenMP pool
  libopencv-dev libyaml-cpp-dev libspdlog-dev nlohmann-json3-dev libcli11-dev
  zlib1g-dev                          # predicted labels as indexed (palette) PNGs
  libgtest-dev libbenchmark-dev
  libx11-dev                          # the demo checks that DISPLAY answers before opening a window
  xvfb xauth xdotool                  # the demo window's test: a virtual display, keys and clicks
  imagemagick                         # tools/demo_screenshot.sh: `import` grabs the window; VOC palette PNGs in tests
  python3-torchvision                 # tools/convert_torchvision.py and its test (torchvision's ResNets)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
# apt prints thousands of lines on a bare machine: they go to a log, and one line says what
# happens; the log's end is shown if apt fails. ATTNSEG_SETUP_VERBOSE=1 shows everything.
log="${TMPDIR:-/tmp}/attnseg-setup.log"
echo "setup: installing ${#missing[@]} Debian packages with their dependencies (on a bare Debian 12 root: 574 MB" \
  "to download and 2.4 GB on disk, a few minutes); apt's output: $log" >&2
start=$SECONDS
apt_install() {
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
}
if [ "${ATTNSEG_SETUP_VERBOSE:-0}" = 1 ]; then
  apt_install
elif ! apt_install >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "setup: apt-get failed (its last lines above, all of them in $log)" >&2
  exit 1
fi
echo "setup: installed ${missing[*]} in $((SECONDS - start)) s" >&2
