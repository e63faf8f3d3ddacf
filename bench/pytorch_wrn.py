#!/usr/bin/env python3
"""The WRN of warpnet (paper Table 1) and its training step in plain PyTorch, timed the same way as
`warpnet bench`: synthetic batch, forward + cross-entropy + backward + SGD(momentum 0.9, wd 5e-4) step,
median over timed steps after warm-up steps. Prints one summary line, and with --json one JSON line.

--precision bf16 is PyTorch's standard mixed-precision recipe: the forward and the loss under
torch.autocast(device, dtype=torch.bfloat16), backward and SGD outside it (fp32 master weights).
--channels-last adds the other standard setting: model and input in torch.channels_last memory."""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from warpnet_torch import WRN  # noqa: E402  the same network, with warpnet's parameter names


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--nwarp", type=int, default=2)
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:I]")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    units = a.k * a.nwarp
    device = torch.device(a.device)
    net = WRN(units, a.width, a.classes).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(a.batch, 3, 32, 32, device=device)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.to(memory_format=torch.channels_last)
    labels = torch.randint(a.classes, (a.batch,), device=device)
    net.train()
    step_ms = []
    for i in range(a.warmup + a.steps):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = F.cross_entropy(net(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # waits for the step on asynchronous devices
        if i >= a.warmup:
            step_ms.append((time.perf_counter() - started) * 1e3)
    ms = statistics.median(step_ms)
    result = {
        "model": f"WRN-{6 * units + 1}-{a.width}",
        "batch": a.batch,
        "threads": torch.get_num_threads(),
        "precision": a.precision,
        "memory_format": "channels-last" if a.channels_last else "nchw",
        "steps": a.steps,
        "ms_per_batch": ms,
        "images_per_s": a.batch / (ms / 1e3),
        "step_ms": step_ms,
    }
    print(f"pytorch {torch.__version__} {result['model']} batch {a.batch} threads {result['threads']} "
          f"{a.precision} {result['memory_format']}: "
          f"{ms:.1f} ms/batch (median of {a.steps}), {result['images_per_s']:.1f} images/s")
    if a.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
