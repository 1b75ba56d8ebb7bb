"""Times the papers' reference implementations the way `attnseg bench` times ours: each
block alone on a [B, C, H, W] feature map, eval mode, inference mode, warm-up, median and
quartiles of the timed runs (each run ends in .item(), which waits for the device). Prints one
JSON document (same shape as `attnseg bench --json`).

    /usr/bin/python3 tools/reference/bench.py --refs REFS --blocks cbam,gcnet
    python3 tools/reference/bench.py --refs REFS --blocks ccnet --device cuda --precision bf16

On a GPU the tensors a reference makes inside its forward (ccnet's -inf mask) are made there
too (torch.set_default_device), and bf16 is autocast on a bf16 input, as `attnseg bench
--precision bf16` feeds a block what a model under autocast hands it.
"""
import argparse
import importlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", required=True)
    parser.add_argument("--blocks", required=True, help="comma-separated block names")
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--sizes", default="32x64,64x128")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="0: all cores")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    if device.type != "cpu":
        torch.set_default_device(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    results = []
    for block in args.blocks.split(","):
        module = importlib.import_module(block)
        if not hasattr(module, "build") and not hasattr(module, "build_for"):
            continue
        src, commit = common.reference_tree(args.refs, module.REPO)
        # A reference whose parameters depend on the token count (linformer's Linear(N, k))
        # is built for each size.
        per_size = hasattr(module, "build_for")
        net = module.build_for(src, args.channels, *sizes[0]) if per_size else module.build(src, args.channels)
        net = net.to(device)
        entry = {"block": block, "reference": f"{module.REPO}@{commit}",
                 "parameters": sum(p.numel() for p in net.eval().parameters()), "sizes": []}
        for h, w in sizes:
            if per_size:
                net = module.build_for(src, args.channels, h, w).to(device).eval()
            torch.manual_seed(0)
            x = torch.randn(args.batch, args.channels, h, w, device=device)
            if args.precision == "bf16":
                x = x.to(torch.bfloat16)
            median, p25, p75 = common.timed_forwards(net, x, args.warmup, args.iters, autocast)
            entry["sizes"].append({"height": h, "width": w, "median_ms": median, "p25_ms": p25, "p75_ms": p75})
        results.append(entry)
    json.dump({"channels": args.channels, "batch": args.batch, "threads": threads, "device": str(device),
               "precision": args.precision, "torch": torch.__version__, "blocks": results}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
