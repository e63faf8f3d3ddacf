#!/usr/bin/env python3
"""warpnet's sequential byte-level GPT (`warpnet lm bench --variant sequential`) side by side with the
same model and step in PyTorch (bench/pytorch_gpt.py, with its foreach and its fused AdamW): one
training step on random bytes, the same size, batch and precision.

Rounds alternate the programs, so machine noise hits all alike; each figure is the median over the
rounds of each run's median step. The ratio is warpnet's tokens/s over the faster PyTorch's (>= 1:
warpnet at least as fast).

    ./scripts/setup.sh --pytorch && cargo build --release
    python3 bench/lm_vs_pytorch.py                        # GPT-4x128, batch 32 x 128, fp32 and bf16
    python3 bench/lm_vs_pytorch.py --precisions fp32 --rounds 9
    python3 bench/lm_vs_pytorch.py --device cuda:0 --precisions bf16 --adamw fused --rounds 2

On a GPU warpnet steps through its executor with one worker there (`lm bench --devices cuda:0`), the
one way it trains on a GPU.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARPNET = os.environ.get("WARPNET_BIN") or os.path.join(ROOT, "target", "release", "warpnet")
PYTORCH_SITE = os.path.join(ROOT, ".deps", "pytorch-2.11")


def last_json(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--device", default="cpu", help="cpu, or cuda:I")
    p.add_argument("--adamw", default="foreach,fused", help="PyTorch's AdamW implementations to time")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    size = ["--blocks", a.blocks, "--width", a.width, "--heads", a.heads, "--context", a.context, "--batch", a.batch]
    size = [str(s) for s in size]
    adamw_kinds = a.adamw.split(",")
    on_gpu = ["--devices", a.device] if a.device != "cpu" else []
    # The local PyTorch of `scripts/setup.sh --pytorch` where there is one, else the interpreter's own.
    env = dict(os.environ, PYTHONPATH=PYTORCH_SITE) if os.path.isdir(PYTORCH_SITE) else None
    rows = []
    for precision in a.precisions.split(","):
        ms = {name: [] for name in ["warpnet"] + adamw_kinds}
        for _ in range(a.rounds):
            warpnet = [WARPNET, "lm", "bench", "--variant", "sequential", "--precision", precision,
                       "--steps", str(a.steps), "--json"] + size + on_gpu
            ms["warpnet"].append(last_json(warpnet)["ms_per_step"])
            for kind in adamw_kinds:
                torch = [sys.executable, os.path.join(ROOT, "bench", "pytorch_gpt.py"), "--precision", precision,
                         "--adamw", kind, "--steps", str(a.steps), "--device", a.device,
                         "--json"] + size
                ms[kind].append(last_json(torch, env)["ms_per_step"])
        medians = {name: statistics.median(v) for name, v in ms.items()}
        best = min(adamw_kinds, key=lambda k: medians[k])
        row = {"precision": precision, "warpnet_ms": medians["warpnet"],
               **{f"pytorch_{k}_ms": medians[k] for k in adamw_kinds}, "device": a.device,
               "strongest": f"pytorch adamw {best}", "ratio": medians[best] / medians["warpnet"], "runs": ms}
        rows.append(row)
        pytorch = ", ".join(f"{k} {medians[k]:.1f}" for k in adamw_kinds)
        print(f"GPT-{a.blocks}x{a.width} batch {a.batch} x {a.context} {a.device} {precision}: warpnet "
              f"{medians['warpnet']:.1f} ms/step, PyTorch {pytorch}; warpnet tokens/s over PyTorch's best: {row['ratio']:.3f} (median of {a.rounds} rounds)")
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
