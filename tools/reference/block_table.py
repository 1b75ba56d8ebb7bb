"""Joins `attnseg bench --json` (ours), tools/reference/bench.py (reference) and the
synthetic-set evaluations (work_dirs/<block>_r18_synthetic/eval.json) into the README's
block table, one row per block."""
import argparse
import json
import math
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def registry():
    """name → (paper, complexity) from `attnseg list`."""
    text = subprocess.run([os.path.join(ROOT, "build/release/attnseg"), "list"], check=True,
                          capture_output=True, text=True).stdout
    rows = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        rows[fields[0]] = (fields[2], " ".join(fields[3:-1]))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench-dir", required=True)
    parser.add_argument("--blocks", required=True)
    parser.add_argument("--work-dirs", default=os.path.join(ROOT, "work_dirs"))
    args = parser.parse_args()
    reg = registry()
    header = None
    rows = []
    for block in args.blocks.split(","):
        ours = load(os.path.join(args.bench_dir, f"ours_{block}.json"))
        ref = load(os.path.join(args.bench_dir, f"ref_{block}.json"))
        b = ours["blocks"][0]
        sizes = [f"{s['height']}×{s['width']}" for s in b["sizes"]]
        if header is None:
            header = (["block", "paper", "complexity", f"params (C={ours['channels']})"]
                      + [f"ms @ {s}" for s in sizes] + [f"ref ms @ {s}" for s in sizes]
                      + ["ours / ref", "time ∝ N^k", "synthetic mIoU"])
        r = ref["blocks"][0] if ref and ref["blocks"] else None
        ours_ms = [s["median_ms"] for s in b["sizes"]]
        ref_ms = [s["median_ms"] for s in r["sizes"]] if r else []
        ratio = "/".join(f"{o / q:.2f}" for o, q in zip(ours_ms, ref_ms)) if r else "no reference"
        ev = load(os.path.join(args.work_dirs, f"{block}_r18_synthetic", "eval.json"))
        miou = f"{100 * ev['mIoU']:.2f}" if ev else "not trained"
        k = b["time_exponent"]
        paper, complexity = reg[block]
        rows.append([f"`{block}`", paper, complexity, f"{b['parameters'] / 1e6:.3f} M"]
                    + [f"{m:.1f}" for m in ours_ms]
                    + ([f"{m:.1f}" for m in ref_ms] if r else ["–"] * len(ours_ms))
                    + [ratio, "–" if k is None or (isinstance(k, float) and math.isnan(k)) else f"{k:.2f}", miou])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{ours['threads']} threads, batch {ours['batch']}, median of {ours['iters']} runs after "
          f"{ours['warmup']} warm-up; reference on the same machine and LibTorch in the same run.")


if __name__ == "__main__":
    main()
