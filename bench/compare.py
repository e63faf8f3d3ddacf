#!/usr/bin/env python3
"""warpnet and PyTorch side by side: the same WRN training step, run alternately in rounds so machine
noise hits both alike, medians over all timed steps, and the ratio of images/s.

    ./scripts/setup.sh --pytorch && cargo build --release && python3 bench/compare.py --nwarp 2 --width 4 --batch 64
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARPNET = os.path.join(ROOT, "target", "release", "warpnet")
PYTORCH_SITE = os.path.join(ROOT, ".deps", "pytorch-2.11")


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--nwarp", type=int, default=2)
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=3, help="alternations of the two programs")
    p.add_argument("--steps", type=int, default=8, help="timed steps per program per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if not os.path.exists(WARPNET):
        sys.exit(f"compare.py: {WARPNET} missing: run `cargo build --release` first")
    if not os.path.exists(os.path.join(PYTORCH_SITE, "torch", "__init__.py")):
        sys.exit(f"compare.py: {PYTORCH_SITE} missing: run `./scripts/setup.sh --pytorch` first")
    shared = ["--k", str(a.k), "--nwarp", str(a.nwarp), "--width", str(a.width), "--batch", str(a.batch),
              "--steps", str(a.steps), "--warmup", str(a.warmup), "--json"]
    if a.threads:
        shared += ["--threads", str(a.threads)]
    env = dict(os.environ, PYTHONPATH=PYTORCH_SITE)
    times = {"warpnet": [], "pytorch": []}
    for _ in range(a.rounds):
        times["warpnet"] += run_json([WARPNET, "bench", "--model", "wrn"] + shared)["step_ms"]
        times["pytorch"] += run_json([sys.executable, os.path.join(ROOT, "bench", "pytorch_wrn.py")] + shared, env)["step_ms"]
    ms = {name: statistics.median(t) for name, t in times.items()}
    ips = {name: a.batch / (m / 1e3) for name, m in ms.items()}
    label = f"WRN-{6 * a.k * a.nwarp + 1}-{a.width}"
    print(f"{label}, batch {a.batch}, threads {a.threads or 'default'}, {a.rounds} rounds x {a.steps} steps")
    print(f"{'':10} {'ms/batch':>10} {'images/s':>10}")
    for name in ("warpnet", "pytorch"):
        print(f"{name:10} {ms[name]:10.1f} {ips[name]:10.1f}")
    ratio = ips["warpnet"] / ips["pytorch"]
    print(f"ratio warpnet/pytorch images/s: {ratio:.3f}")
    if a.json:
        print(json.dumps({"model": label, "batch": a.batch, "ms_per_batch": ms, "images_per_s": ips, "ratio": ratio}))


if __name__ == "__main__":
    main()
