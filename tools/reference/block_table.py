"""Joins `attnseg bench --json` (ours), tools/reference/bench.py (reference) and the
synthetic-set evaluations (work_dirs/<block>_r18_synthetic/eval.json) into the README's
block table, one row per block. Timings come in rounds (ours_<block>_r<k>.json,
ref_<block>_r<k>.json); each size's figure is the fastest round's median, and the growth
exponent is fitted to those. The fastest round rather than the median over rounds: this
machine has slow spells of seconds to minutes that add a fixed share to every run inside them
(`ema` at 32×64 took 17.8 ms in some rounds and 25–26 ms in others, on both sides), so a
median over five rounds still depends on how many spells fell on each side."""
import argparse
import glob
import json
import math
import os
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def rounds(bench_dir, side, block):
    """Per size, the smallest of the round medians; None without any round."""
    docs = [load(p) for p in sorted(glob.glob(os.path.join(bench_dir, f"{side}_{block}_r*.json")))]
    docs = [d for d in docs if d and d["blocks"]]
    if not docs:
        return None, None
    sizes = docs[0]["blocks"][0]["sizes"]
    medians = [min(d["blocks"][0]["sizes"][i]["median_ms"] for d in docs)
               for i in range(len(sizes))]
    return docs, medians


def growth_exponent(tokens, times):
    """Least-squares slope of log time against log tokens."""
    if len(tokens) < 2:
        return None
    lx, ly = [math.log(t) for t in tokens], [math.log(t) for t in times]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    sxx = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sxx if sxx > 0 else None


def registry():
    """name → (paper, complexity) from `attnseg list`."""
    text = subprocess.run([os.path.join(ROOT, "build/release/attnseg"), "list"], check=True,
                          capture_output=True, text=True).stdout
    rows = {}
    for line in text.splitlines()[1:]:
        # name family paper complexity... params devices precisions options...: the
        # complexity (which may hold spaces) runs up to the parameter count.
        fields = line.split()
        params = next(i for i in range(3, len(fields)) if fields[i].isdigit())
        rows[fields[0]] = (fields[2], " ".join(fields[3:params]))
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
        ours_docs, ours_ms = rounds(args.bench_dir, "ours", block)
        _, ref_ms = rounds(args.bench_dir, "ref", block)
        ours = ours_docs[0]
        b = ours["blocks"][0]
        sizes = [f"{s['height']}×{s['width']}" for s in b["sizes"]]
        if header is None:
            header = (["block", "paper", "complexity", f"params (C={ours['channels']})"]
                      + [f"ms @ {s}" for s in sizes] + [f"ref ms @ {s}" for s in sizes]
                      + ["ours / ref", "time ∝ N^k", "synthetic mIoU"])
        ratio = "/".join(f"{o / q:.2f}" for o, q in zip(ours_ms, ref_ms)) if ref_ms else "no reference"
        ev = load(os.path.join(args.work_dirs, f"{block}_r18_synthetic", "eval.json"))
        miou = f"{100 * ev['mIoU']:.2f}" if ev else "not trained"
        k = growth_exponent([s["height"] * s["width"] for s in b["sizes"]], ours_ms)
        paper, complexity = reg[block]
        rows.append([f"`{block}`", paper, complexity, f"{b['parameters'] / 1e6:.3f} M"]
                    + [f"{m:.1f}" for m in ours_ms]
                    + ([f"{m:.1f}" for m in ref_ms] if ref_ms else ["–"] * len(ours_ms))
                    + [ratio, "–" if k is None else f"{k:.2f}", miou])
        n_rounds = len(ours_docs)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    where = f"{ours['threads']} threads" if ours.get("device", "cpu") == "cpu" else ours["device"]
    print(f"\n{where}, {ours.get('precision', 'fp32')}, batch {ours['batch']}; each figure the fastest of {n_rounds} "
          f"alternating rounds, a round being the median of {ours['iters']} runs after {ours['warmup']} warm-up; "
          "reference on the same machine and LibTorch in the same run.")


if __name__ == "__main__":
    main()
