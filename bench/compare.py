#!/usr/bin/env python3
"""warpnet's training step side by side with PyTorch's, and WarpNet's against its WRN twin.

Every program of the suite runs once per round, rounds alternate, so machine noise hits all alike; the
figure is the median over all timed steps of all rounds (each run does its own warm-up steps first).

    ./scripts/setup.sh --pytorch && cargo build --release
    python3 bench/compare.py                      # the CPU suite: 1 and 2 threads (about 15 minutes)
    python3 bench/compare.py --suite quick        # WRN-13-4 batch 64 only
    python3 bench/compare.py --suite batch128     # WRN-13-4 and WRN-37-4 at batch 128, 2 threads
    python3 bench/compare.py --suite gpu          # WRN-37-4 and WarpNet1-37-4 (K=2), batch 128, cuda:0
    python3 bench/compare.py --suite change --before OLD/warpnet   # this build against an earlier one
    python3 bench/compare.py --suite precision    # bf16: WRN-13-4 and -37-4, batch 64 and 128, 1 and 2 threads
    python3 bench/compare.py --suite precision-quick   # bf16: WRN-13-4 batch 64, 2 threads only
    python3 bench/compare.py --suite gpu-precision     # bf16: WRN-37-4 and WarpNet1-37-4, batch 128, cuda:0
    python3 bench/compare.py --suite layout       # warpnet NCHW vs channels-last, fp32 and bf16, 2 threads

Rows:  WRN vs PyTorch: ratio = warpnet images/s / PyTorch images/s (>= 1: warpnet is as fast); also against
       PyTorch run with warpnet's malloc settings (CPU suites), to tell the step from the allocator.
       WarpNet vs its WRN twin (same units and width, warpnet both): cost = WarpNet ms / WRN ms.
       "shared" vs "per-term": what sharing each unit's primal pass among the terms saves.
       this build vs --before: ratio = before ms / after ms (> 1: faster now), incl. placements on workers.
       Precision suites: warpnet bf16 vs PyTorch's bf16 autocast, the faster of its NCHW and channels-last
       runs (ratio of images/s, >= 1: warpnet as fast); warpnet bf16 vs warpnet fp32 (ratio = fp32 ms /
       bf16 ms: bf16's speed-up); WarpNet1/2 K=2 vs their WRN twin, both bf16 (cost = ms / ms).
       Layout suite: warpnet channels-last vs NCHW in one precision (ratio = NCHW ms / channels-last ms,
       > 1: channels-last faster), what src/precision.rs's layout rule rests on.
Every warpnet row passes --precision explicitly (fp32 unless the row is bf16), so `auto` never decides.
Writes runs/bench/speed.md and speed.csv (--out), and with --json one JSON line last.
"""
import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The binary to time: target/release/warpnet, or $WARPNET_BIN (scripts/gpu-check.sh carries a copy).
WARPNET = os.environ.get("WARPNET_BIN") or os.path.join(ROOT, "target", "release", "warpnet")
PYTORCH_SITE = os.path.join(ROOT, ".deps", "pytorch-2.11")
TMP = os.path.join(ROOT, "runs", "bench", "tmp")
# warpnet's allocator settings (src/runtime/memory.rs: no mmap, trim above 2 GiB, one arena) given to
# PyTorch through glibc's environment variables, so a ratio can tell the step from the allocator.
SAME_MALLOC = ["env", "MALLOC_MMAP_MAX_=0", "MALLOC_TRIM_THRESHOLD_=2147483647", "MALLOC_ARENA_MAX=1"]

# Network sizes: WRN-n-kw with n = 6 * units + 1 (Table 1); the WarpNet twin has K = 2 and units / 2 layers.
WRN_13_4 = {"nwarp": 2, "width": 4}
WRN_37_4 = {"nwarp": 6, "width": 4}
WRN_7_1 = {"nwarp": 1, "width": 1}  # the demo's network


# The suite `change`: this build against an earlier one (--before BINARY), single device and placements.
CHANGE = [
    dict(WRN_13_4, batch=64, threads=2),
    dict(WRN_13_4, batch=128, threads=2),
    dict(WRN_13_4, batch=64, threads=2, model="warp", k=2, nwarp=1, variant="warpnet1"),
    dict(WRN_13_4, batch=64, threads=1, model="warp", k=2, nwarp=1, variant="warpnet1"),
    dict(WRN_13_4, batch=64, run="warpnet1 k=2 cpu:3 [F1],[F2],[F2'x1]"),
    dict(WRN_13_4, batch=64, run="warpnet1 k=2 cpu:2 [F1],[F2,F2'x1]"),
    dict(WRN_13_4, batch=64, run="warpnet1 k=2 cpu:2 [F1,F2'x1:0.5],[F2,F2'x1:0.5]"),
]


def precision_programs(suite, device):
    """The precision suites: per size, PyTorch bf16 (NCHW and channels-last), warpnet bf16 and fp32, and
    (WRN-13-4, or on the GPU) WarpNet1/2 K=2 under bf16."""
    if suite == "gpu-precision":
        threads, sizes, batches = [None], [WRN_37_4], [128]
    elif suite == "precision-quick":
        threads, sizes, batches = [2], [WRN_13_4], [64]
    else:
        threads, sizes, batches = [1, 2], [WRN_13_4, WRN_37_4], [64, 128]
    rows = []
    for t in threads:
        for size in sizes:
            for batch in batches:
                bf16 = dict(size, batch=batch, threads=t, device=device, precision="bf16")
                rows.append(("wrn bf16", "pytorch", bf16))
                rows.append(("wrn bf16 cl", "pytorch", dict(bf16, channels_last=True)))
                rows.append(("wrn bf16", "warpnet", bf16))
                rows.append(("wrn fp32", "warpnet", dict(bf16, precision="fp32")))
                if size is WRN_13_4 or suite == "gpu-precision":
                    warp = dict(bf16, model="warp", k=2, nwarp=size["nwarp"] // 2)
                    rows.append(("warpnet1 bf16", "warpnet", dict(warp, variant="warpnet1")))
                    if suite != "gpu-precision":
                        rows.append(("warpnet2 bf16", "warpnet", dict(warp, variant="warpnet2")))
    return rows


def layout_programs(device):
    """warpnet in NCHW and channels-last: fp32 at the demo's and WRN-13-4's sizes, bf16 at WRN-13-4."""
    rows = []
    for size, batch, precision in [(WRN_7_1, 128, "fp32"), (WRN_13_4, 64, "fp32"), (WRN_13_4, 128, "fp32"),
                                   (WRN_13_4, 64, "bf16")]:
        s = dict(size, batch=batch, threads=2, device=device, precision=precision)
        rows.append((f"{precision} nchw", "warpnet", dict(s, memory_format="nchw")))
        rows.append((f"{precision} channels-last", "warpnet", dict(s, memory_format="channels-last")))
    return rows


def programs(suite, device):
    """(row key, program, settings) for every program of the suite."""
    rows = []
    if suite.startswith("precision") or suite == "gpu-precision":
        return precision_programs(suite, device)
    if suite == "layout":
        return layout_programs(device)
    if suite == "change":
        for s in CHANGE:
            rows += [("after", "warpnet", dict(s, device=device)), ("before", "before", dict(s, device=device))]
        return rows
    if suite == "gpu":
        threads, sizes, batches = [None], [WRN_37_4], [128]
    elif suite == "quick":
        threads, sizes, batches = [2], [WRN_13_4], [64]
    elif suite == "batch128":
        threads, sizes, batches = [2], [WRN_13_4, WRN_37_4], [128]
    else:
        threads, sizes, batches = [1, 2], [WRN_13_4, WRN_37_4], [64, 128]
    for t in threads:
        for size in sizes:
            for batch in batches:
                shared = dict(size, batch=batch, threads=t, device=device)
                rows.append(("wrn", "pytorch", shared))
                if suite != "gpu":
                    rows.append(("wrn", "pytorch-malloc", shared))
                rows.append(("wrn", "warpnet", shared))
                if size is WRN_13_4 or suite == "gpu":
                    warp = dict(shared, model="warp", k=2, nwarp=size["nwarp"] // 2)
                    rows.append(("warpnet1", "warpnet", dict(warp, variant="warpnet1")))
                    if suite != "gpu":
                        rows.append(("warpnet2", "warpnet", dict(warp, variant="warpnet2")))
                        rows.append(("warpnet2 per-term", "warpnet", dict(warp, variant="warpnet2", per_term=True)))
    return rows


def command(program, s, steps, warmup, before=None):
    common = ["--nwarp", str(s["nwarp"]), "--width", str(s["width"]), "--batch", str(s["batch"]),
              "--steps", str(steps), "--warmup", str(warmup), "--json"]
    binary = before if program == "before" else WARPNET
    if "run" in s:  # one configuration of the parallel executor; the nwarp/width flags size its network
        return [binary, "bench", "--rounds", "1", "--run", s["run"], "--out", os.path.join(TMP, "run")] + common
    if s.get("threads"):
        common += ["--threads", str(s["threads"])]
    if program != "before" or knows_precision(before):  # builds before --precision computed in fp32
        common += ["--precision", s.get("precision", "fp32")]
    if program in ("pytorch", "pytorch-malloc"):
        device = "cuda" if s["device"].startswith("cuda") else "cpu"
        prefix = SAME_MALLOC if program == "pytorch-malloc" else []
        layout = ["--channels-last"] if s.get("channels_last") else []
        return prefix + [sys.executable, os.path.join(ROOT, "bench", "pytorch_wrn.py"), "--device", device] + common + layout
    cmd = [binary, "bench", "--model", s.get("model", "wrn")] + common
    if s["device"] != "cpu":
        cmd += ["--device", s["device"]]
    if "k" in s:
        cmd += ["--k", str(s["k"]), "--variant", s["variant"]]
    if "memory_format" in s:
        cmd += ["--memory-format", s["memory_format"]]
    if s.get("per_term"):
        cmd += ["--per-term-primals"]
    return cmd


def knows_precision(binary):
    """Whether a warpnet build has `bench --precision`."""
    done = subprocess.run([binary, "bench", "--help"], capture_output=True, text=True)
    return "--precision" in done.stdout


def run_json(cmd):
    env = dict(os.environ, PYTHONPATH=PYTORCH_SITE)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        sys.exit(f"compare.py: {' '.join(cmd)} failed (exit {done.returncode}): {last}")
    out = done.stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["runs"][0] if "runs" in result else result


def label(s):
    if "run" in s:
        return s["run"]
    units = 6 * s.get("k", 1) * s["nwarp"] + 1
    name = {"warpnet1": "WarpNet1", "warpnet2": "WarpNet2"}.get(s.get("variant"), "WRN")
    return f"{name}-{units}-{s['width']}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["cpu", "quick", "batch128", "gpu", "change", "precision", "precision-quick",
                                       "gpu-precision", "layout"], default="cpu")
    p.add_argument("--before", help="suite change: an earlier build of warpnet to compare with")
    p.add_argument("--device", default=None, help="cpu or cuda:I (default: cuda:0 for --suite gpu)")
    p.add_argument("--rounds", type=int, default=2, help="alternations of all programs")
    p.add_argument("--steps", type=int, default=2, help="timed steps per program per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per program per round")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "bench"))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    device = a.device or ("cuda:0" if a.suite.startswith("gpu") else "cpu")
    if not os.path.exists(WARPNET):
        sys.exit(f"compare.py: {WARPNET} missing: run `cargo build --release` first")
    if a.suite == "change" and not (a.before and os.path.exists(a.before)):
        sys.exit("compare.py: --suite change needs --before BINARY, an earlier build of warpnet")
    rows = programs(a.suite, device)
    times = [[] for _ in rows]
    for r in range(a.rounds):
        for i, (key, program, s) in enumerate(rows):
            print(f"round {r + 1}/{a.rounds}: {program} {key} {label(s)} batch {s['batch']} threads "
                  f"{s.get('threads') or 'default'}", file=sys.stderr)
            times[i] += run_json(command(program, s, a.steps, a.warmup, a.before))["step_ms"]
    ms = [statistics.median(t) for t in times]

    def find(key, program, s):
        for i, (k, prog, other) in enumerate(rows):
            if k == key and prog == program and other["batch"] == s["batch"] and other.get("threads") == s.get("threads") \
                    and other["nwarp"] * other.get("k", 1) == s["nwarp"] * s.get("k", 1):
                return ms[i]
        return None

    header = ["comparison", "network", "batch", "threads", "ms/batch", "images/s", "reference", "ref ms/batch",
              "ref images/s", "ratio"]
    table = []
    for i, (key, program, s) in enumerate(rows):
        threads = s.get("threads") or "default"
        if key == "wrn bf16" and program == "warpnet":
            plain, cl = find("wrn bf16", "pytorch", s), find("wrn bf16 cl", "pytorch", s)
            ref, which = (plain, "NCHW") if plain <= cl else (cl, "channels-last")
            table.append(["WRN bf16 vs PyTorch bf16 autocast, its faster layout (ratio of images/s)", label(s),
                          s["batch"], threads, ms[i], s["batch"] / ms[i] * 1e3, f"PyTorch bf16 {which}", ref,
                          s["batch"] / ref * 1e3, ref / ms[i]])
            fp32 = find("wrn fp32", "warpnet", s)
            table.append(["warpnet bf16 vs warpnet fp32 (ratio = fp32 ms / bf16 ms)", label(s), s["batch"], threads,
                          ms[i], s["batch"] / ms[i] * 1e3, "warpnet fp32", fp32, s["batch"] / fp32 * 1e3, fp32 / ms[i]])
        elif key.endswith(" channels-last"):
            precision = key.split()[0]
            ref = ms[i - 1]  # its NCHW row precedes it
            table.append([f"warpnet {precision} channels-last vs NCHW (ratio = NCHW ms / channels-last ms)", label(s),
                          s["batch"], threads, ms[i], s["batch"] / ms[i] * 1e3, "NCHW", ref, s["batch"] / ref * 1e3,
                          ref / ms[i]])
        elif key in ("warpnet1 bf16", "warpnet2 bf16"):
            ref = find("wrn bf16", "warpnet", s)
            name = "WarpNet1" if key.startswith("warpnet1") else "WarpNet2"
            table.append([f"{name} K=2 vs WRN twin, both bf16 (cost = ms / ms)", label(s), s["batch"], threads, ms[i],
                          s["batch"] / ms[i] * 1e3, "WRN twin bf16", ref, s["batch"] / ref * 1e3, ms[i] / ref])
        elif key == "wrn" and program == "warpnet":
            ref = find("wrn", "pytorch", s)
            table.append(["WRN vs PyTorch (ratio of images/s)", label(s), s["batch"], threads, ms[i], s["batch"] / ms[i] * 1e3,
                          "PyTorch", ref, s["batch"] / ref * 1e3, ref / ms[i]])
            ref = find("wrn", "pytorch-malloc", s)
            if ref is not None:
                table.append(["WRN vs PyTorch with warpnet's malloc settings (ratio of images/s)", label(s), s["batch"],
                              threads, ms[i], s["batch"] / ms[i] * 1e3, "PyTorch, same malloc", ref,
                              s["batch"] / ref * 1e3, ref / ms[i]])
        elif key in ("warpnet1", "warpnet2"):
            ref = find("wrn", "warpnet", s)
            name = "WarpNet1" if key == "warpnet1" else "WarpNet2"
            table.append([f"{name} K=2 vs WRN twin (cost = ms / ms)", label(s), s["batch"], threads, ms[i],
                          s["batch"] / ms[i] * 1e3, "WRN twin", ref, s["batch"] / ref * 1e3, ms[i] / ref])
        elif key == "after":
            ref = ms[i + 1]  # its "before" row follows it
            table.append(["this build vs --before (ratio = before ms / after ms)", label(s), s["batch"], threads,
                          ms[i], s["batch"] / ms[i] * 1e3, "before", ref, s["batch"] / ref * 1e3, ref / ms[i]])
        elif key == "warpnet2 per-term":
            ref = find("warpnet2", "warpnet", s)
            table.append(["WarpNet2 primal passes per term vs shared (cost)", label(s), s["batch"],
                          threads, ms[i], s["batch"] / ms[i] * 1e3, "shared", ref, s["batch"] / ref * 1e3, ms[i] / ref])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) and v < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table]
    markdown = "\n".join(lines) + "\n"
    print(f"device {device}, {a.rounds} rounds x {a.steps} timed steps after {a.warmup} warm-up steps, medians")
    print(markdown, end="")
    print("every program: " + "; ".join(f"{prog} {key} {label(s)} batch {s['batch']}: {m:.1f} ms"
                                        for (key, prog, s), m in zip(rows, ms)))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "speed.md"), "w") as f:
        f.write(markdown)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header] + table)
    with open(os.path.join(a.out, "speed.csv"), "w") as f:
        f.write(buffer.getvalue())
    print(f"written: {a.out}/speed.md, {a.out}/speed.csv")
    if a.json:
        print(json.dumps({"device": device, "header": header, "rows": table}))


if __name__ == "__main__":
    main()
