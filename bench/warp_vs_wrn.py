#!/usr/bin/env python3
"""WarpNet1 and WarpNet2 (K = 2 and 3) against their WRN twins, trained with the same seed and budget on
the same data, one after the other; prints a markdown table of test accuracies and images/s.

    cargo build --release && python3 bench/warp_vs_wrn.py --epochs 15 --milestones 9,13

WARPNET=/path/to/warpnet picks another binary (e.g. a copy, so that rebuilding does not change it mid-run).
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARPNET = os.environ.get("WARPNET", os.path.join(ROOT, "target", "release", "warpnet"))


def train(model_flags, a, out):
    cmd = [WARPNET, "train", "--preset", "demo", "--data", a.data, "--width", str(a.width), "--epochs", str(a.epochs),
           "--milestones", a.milestones, "--seed", str(a.seed), "--quiet", "--json", "--out", out] + model_flags
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"warp_vs_wrn.py: {' '.join(cmd)} failed: {run.stderr.strip()}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--nwarp", type=int, default=1)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--milestones", default="9,13")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ks", default="2,3")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "warp-vs-wrn"))
    a = p.parse_args()
    rows = []
    for k in [int(k) for k in a.ks.split(",")]:
        base = ["--k", str(k), "--nwarp", str(a.nwarp)]
        runs = [("WRN", base + ["--model", "wrn"])] + [
            (v, base + ["--model", "warp", "--variant", v]) for v in ("warpnet1", "warpnet2")]
        twin = None
        for name, flags in runs:
            s = train(flags, a, os.path.join(a.out, f"k{k}-{name}"))
            twin = twin or s
            rows.append((k, s["model"], s["test_accuracy"], s["test_accuracy"] - twin["test_accuracy"], s["images_per_s"]))
            print(f"K={k} {s['model']}: test accuracy {100 * s['test_accuracy']:.2f}%", file=sys.stderr)
    print(f"\n{a.data}, width {a.width}, {a.epochs} epochs, milestones {a.milestones}, seed {a.seed}\n")
    print("| K | network | test accuracy | vs WRN twin | train images/s |")
    print("| --- | --- | --- | --- | --- |")
    for k, model, acc, delta, ips in rows:
        print(f"| {k} | {model} | {100 * acc:.2f}% | {100 * delta:+.2f} | {ips:.0f} |")


if __name__ == "__main__":
    main()
