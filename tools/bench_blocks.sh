#!/usr/bin/env bash
# Times every block (ours, then the paper's reference implementation where one exists) in
# one run, block by block, on the same machine and LibTorch, and prints the README's block
# table. Reference repositories are looked up under REFS (see tools/reference/common.py).
# Each block is timed in ROUNDS alternating rounds (ours, reference, ours, ...), and the table
# takes each side's fastest round, so that a slow spell of the machine does not decide a ratio.
# The reference runs with the allocator settings attnseg makes for itself (keep_freed_memory)
# and the BLAS attnseg loads (Debian's OpenMP build of OpenBLAS; see CMakeLists.txt).
#   tools/bench_blocks.sh --refs DIR [--blocks LIST] [--sizes 32x64,64x128] [--iters 20] [--rounds 3]
#                         [--device cpu|cuda] [--precision fp32|bf16] [--bin build/release/attnseg]
# On a GPU machine PyTorch's own python3 runs the references: PYTHON=python3.
set -euo pipefail
cd "$(dirname "$0")/.."
refs="" blocks=all sizes=32x64,64x128 iters=20 channels=512 rounds=3 device=cpu precision=fp32
bin=build/release/attnseg
python=${PYTHON:-/usr/bin/python3}
while (($#)); do
  case "$1" in
    --refs) refs=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --blocks) blocks=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --channels) channels=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$refs" ]; then
  echo "error: give --refs DIR, the directory that holds the reference repositories (tools/reference/common.py)" >&2
  exit 2
fi
out=${BENCH_OUT:-work_dirs/bench_blocks}
mkdir -p "$out"
if [ "$blocks" = all ]; then blocks=$("$bin" list | awk 'NR > 1 {print $1}' | paste -sd, -); fi
blas_dir=$(dirname "$(ldd "$bin" | awk '$1 == "libblas.so.3" {print $3}')")
common=(--channels "$channels" --sizes "$sizes" --iters "$iters" --device "$device" --precision "$precision")
rm -f "$out"/ours_*.json "$out"/ref_*.json "$out/log.txt"
for b in ${blocks//,/ }; do
  # A reference that is one part of our block names the options that make ours that part
  # (OURS_SET in its tools/reference/<block>.py, passed to bench --set).
  set_args=()
  if [ -f "tools/reference/$b.py" ]; then
    ours_set=$(sed -n 's/^OURS_SET = "\(.*\)"$/\1/p' "tools/reference/$b.py")
    if [ -n "$ours_set" ]; then set_args=(--set "$ours_set"); fi
  fi
  for r in $(seq "$rounds"); do
    "$bin" bench --blocks "$b" "${set_args[@]}" "${common[@]}" --no-erf \
      --json "$out/ours_${b}_r$r.json" > /dev/null 2>> "$out/log.txt"
    if [ -f "tools/reference/$b.py" ] && grep -q '^def build' "tools/reference/$b.py"; then
      MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=18446744073709551615 \
        LD_LIBRARY_PATH="$blas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$python" tools/reference/bench.py --refs "$refs" --blocks "$b" "${common[@]}" \
        > "$out/ref_${b}_r$r.json" 2>> "$out/log.txt"
    fi
  done
done
/usr/bin/python3 tools/reference/block_table.py --bench-dir "$out" --blocks "$blocks" | tee "$out/table.md"
