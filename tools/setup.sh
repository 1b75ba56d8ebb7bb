#!/usr/bin/env bash
# Installs what attnseg needs from Debian 12's archive; does nothing when all is present.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache
  libtorch-dev libopenblas0-pthread   # OpenBLAS: the reference BLAS ran matmul 20x slower
  libgloo-dev                         # c10d's Gloo process group headers: multi-process training
  libopenblas0-openmp                 # the build attnseg loads: it shares LibTorch's OpenMP pool
  libopencv-dev libyaml-cpp-dev libspdlog-dev nlohmann-json3-dev libcli11-dev
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
echo "setup: installing ${missing[*]}" >&2
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
