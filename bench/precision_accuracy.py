#!/usr/bin/env python3
"""Test accuracy in fp32 and in bf16 mixed precision, with the same seeds and budget: the demo WRN
(WRN-7-1) and WarpNet1 K = 2 (WarpNet1-13-1) on the embedded Fashion-MNIST subset, one run after the
other. The seed-to-seed spread of each precision is the noise the bf16-fp32 difference is read against.

    cargo build --release && python3 bench/precision_accuracy.py --epochs 10 --milestones 6,8 --seeds 0,1,2

Prints a markdown table (per network and precision: accuracy per seed, mean, standard deviation over the
seeds, train images/s) and the difference of the means, and with --json one JSON line last. Runs found
finished in --out are read, not trained again. WARPNET=/path/to/warpnet picks another binary.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARPNET = os.environ.get("WARPNET", os.path.join(ROOT, "target", "release", "warpnet"))
NETWORKS = {
    "WRN-7-1": ["--model", "wrn", "--k", "1", "--nwarp", "1"],
    "WarpNet1-13-1": ["--model", "warp", "--k", "2", "--nwarp", "1", "--variant", "warpnet1"],
}


def train(network, precision, seed, a):
    out = os.path.join(a.out, f"{network}-{precision}-seed{seed}")
    summary = os.path.join(out, "summary.json")
    if os.path.exists(summary):
        with open(summary) as f:
            return json.load(f)
    cmd = [WARPNET, "train", "--preset", "demo", "--epochs", str(a.epochs), "--milestones", a.milestones,
           "--seed", str(seed), "--precision", precision, "--quiet", "--json", "--out", out] + NETWORKS[network]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"precision_accuracy.py: {' '.join(cmd)} failed: {run.stderr.strip()}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    with open(summary, "w") as f:
        json.dump(result, f)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--milestones", default="6,8")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--networks", default=",".join(NETWORKS))
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "precision-accuracy"))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    for network in a.networks.split(","):
        for precision in a.precisions.split(","):
            runs = [train(network, precision, seed, a) for seed in seeds]
            accuracies = [r["test_accuracy"] for r in runs]
            rows.append({
                "network": network,
                "precision": precision,
                "accuracies": accuracies,
                "mean": statistics.mean(accuracies),
                "sd": statistics.stdev(accuracies) if len(accuracies) > 1 else float("nan"),
                "images_per_s": statistics.median(r["images_per_s"] for r in runs),
            })
            print(f"{network} {precision}: {[f'{100 * x:.2f}' for x in accuracies]}", file=sys.stderr)
    print(f"\nembedded Fashion-MNIST, demo recipe, {a.epochs} epochs, milestones {a.milestones}, seeds {a.seeds}\n")
    print("| network | precision | test accuracy per seed | mean | sd over seeds | train images/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        per_seed = ", ".join(f"{100 * x:.2f}%" for x in r["accuracies"])
        print(f"| {r['network']} | {r['precision']} | {per_seed} | {100 * r['mean']:.2f}% | "
              f"{100 * r['sd']:.2f} | {r['images_per_s']:.0f} |")
    by = {(r["network"], r["precision"]): r for r in rows}
    print()
    for network in a.networks.split(","):
        if (network, "fp32") in by and (network, "bf16") in by:
            fp32, bf16 = by[(network, "fp32")], by[(network, "bf16")]
            print(f"{network}: bf16 - fp32 = {100 * (bf16['mean'] - fp32['mean']):+.2f} points "
                  f"(sd over seeds: fp32 {100 * fp32['sd']:.2f}, bf16 {100 * bf16['sd']:.2f})")
    if a.json:
        print(json.dumps({"epochs": a.epochs, "milestones": a.milestones, "seeds": seeds, "rows": rows}))


if __name__ == "__main__":
    main()
