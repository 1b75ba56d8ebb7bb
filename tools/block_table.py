#!/usr/bin/env python3
"""The README's trained-block table: one row per block, joined from the leaderboard.csv of
several sweeps (e.g. the beacon and the reach families), so that each block's mIoU with its
seed spread, how soon it learned the context rule, its reach curve, trained ERF and cue share
stand side by side. Reads only what `attnseg sweep` wrote; prints Markdown.

  tools/block_table.py beacon=results/beacon reach=results/reach [--order none,nonlocal,...]
"""
import argparse
import csv
import math
import statistics
import sys
from pathlib import Path


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def read_board(path):
    csv_path = Path(path) / "leaderboard.csv"
    try:
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        fail(f"cannot read {csv_path}: {e.strerror}")
    need = {"block", "miou_mean", "miou_std", "seeds", "learned_at_per_seed", "erf", "cue", "fps"}
    if not rows or not need <= set(rows[0]):
        fail(f"{csv_path} is not a leaderboard written by `attnseg sweep` (missing columns or rows)")
    return {r["block"]: r for r in rows}, [r["block"] for r in rows]


def number(row, key, csv_name):
    text = row[key]
    if text == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        fail(f"{csv_name}: column {key} of {row['block']} is not a number: {text!r}")
    return value


def learned_text(field):
    """'750', '750 (2/3)' when only some seeds learned (median of those), 'never', '-' without curves."""
    if field == "":
        return "-"
    its = [int(x) for x in field.split(";")]
    learned = sorted(x for x in its if x >= 0)
    if not learned:
        return "never"
    text = f"{statistics.median(learned):.0f}"
    if len(learned) < len(its):
        text += f" ({len(learned)}/{len(its)})"
    return text


def miou_text(row, name):
    mean = 100 * number(row, "miou_mean", name)
    seeds = int(row["seeds"])
    if seeds < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {100 * number(row, 'miou_std', name):.2f}"


def percent(value, digits=1):
    return "-" if math.isnan(value) else f"{100 * value:.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("boards", nargs="+", help="LABEL=DIR: a sweep's work directory holding leaderboard.csv")
    parser.add_argument("--order", help="comma-separated block order (default: the first board's ranking)")
    args = parser.parse_args()

    boards = []
    for spec in args.boards:
        label, sep, directory = spec.partition("=")
        if not sep or not label or not directory:
            fail(f"argument {spec!r} is not LABEL=DIR")
        rows, order = read_board(directory)
        boards.append((label, str(Path(directory) / "leaderboard.csv"), rows, order))

    order = args.order.split(",") if args.order else boards[0][3]
    for label, name, rows, _ in boards:
        missing = [b for b in order if b not in rows]
        if missing:
            fail(f"{name} has no row for {', '.join(missing)}")

    header = ["block"]
    for label, _, rows, _ in boards:
        seeds = sorted({int(r["seeds"]) for r in rows.values()})
        n = "/".join(str(s) for s in seeds)
        header += [f"{label} mIoU % ({n} seed{'s' if seeds != [1] else ''})", f"{label} learned at"]
        if any(k.startswith("reach_") for k in next(iter(rows.values()))):
            header.append(f"{label} IoU % by distance")
        header += [f"{label} ERF %", f"{label} cue %"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for block in order:
        cells = [f"`{block}`"]
        for label, name, rows, _ in boards:
            r = rows[block]
            cells += [miou_text(r, name), learned_text(r["learned_at_per_seed"])]
            reach = [k for k in r if k.startswith("reach_")]
            if reach:
                cells.append(" / ".join(f"{100 * number(r, k, name):.0f}" for k in reach))
            cells += [percent(number(r, "erf", name)), percent(number(r, "cue", name), 2)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
