#!/usr/bin/env python3
"""The WRN of warpnet (paper Table 1) and its training step in plain PyTorch, timed the same way as
`warpnet bench`: synthetic batch, forward + cross-entropy + backward + SGD(momentum 0.9, wd 5e-4) step,
median over timed steps after warm-up steps. Prints one summary line, and with --json one JSON line."""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

STEM_CHANNELS = 16  # Table 1: the stem convolution's output, before concatenation to 16kw


def conv3x3(c_in, c_out):
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")  # He-normal
    return conv


class Unit(nn.Module):
    """F = BN-Conv3x3-BN-ReLU-Conv3x3-BN; the block adds the identity skip."""

    def __init__(self, c):
        super().__init__()
        self.bn0, self.conv1, self.bn1 = nn.BatchNorm2d(c), conv3x3(c, c), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = conv3x3(c, c), nn.BatchNorm2d(c)

    def forward(self, x):  # (B, C, H, W) -> (B, C, H, W)
        h = self.conv1(self.bn0(x))
        h = F.relu(self.bn1(h))
        return x + self.bn2(self.conv2(h))


class WRN(nn.Module):
    def __init__(self, units, width, classes):
        super().__init__()
        self.width = width
        self.stem_conv, self.stem_bn = conv3x3(3, STEM_CHANNELS), nn.BatchNorm2d(STEM_CHANNELS)
        channels = [STEM_CHANNELS * width * 2**s for s in range(3)]
        self.stages = nn.ModuleList(nn.Sequential(*[Unit(c) for _ in range(units)]) for c in channels)
        self.head_bn, self.fc = nn.BatchNorm2d(channels[-1]), nn.Linear(channels[-1], classes)

    def forward(self, x):  # (B, 3, 32, 32) -> (B, classes)
        h = F.relu(self.stem_bn(self.stem_conv(x))).repeat(1, self.width, 1, 1)  # (B, 16kw, 32, 32)
        for s, stage in enumerate(self.stages):
            if s > 0:  # 2x2 average pooling, then the tensor concatenated with itself: (B, 2C, H/2, W/2)
                pooled = F.avg_pool2d(h, 2)
                h = torch.cat([pooled, pooled], 1)
            h = stage(h)
        h = F.relu(self.head_bn(h)).mean(dim=(2, 3))  # (B, 64kw)
        return self.fc(h)


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
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    units = a.k * a.nwarp
    net = WRN(units, a.width, a.classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(a.batch, 3, 32, 32)
    labels = torch.randint(a.classes, (a.batch,))
    net.train()
    step_ms = []
    for i in range(a.warmup + a.steps):
        started = time.perf_counter()
        loss = F.cross_entropy(net(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if i >= a.warmup:
            step_ms.append((time.perf_counter() - started) * 1e3)
    ms = statistics.median(step_ms)
    result = {
        "model": f"WRN-{6 * units + 1}-{a.width}",
        "batch": a.batch,
        "threads": torch.get_num_threads(),
        "steps": a.steps,
        "ms_per_batch": ms,
        "images_per_s": a.batch / (ms / 1e3),
        "step_ms": step_ms,
    }
    print(f"pytorch {torch.__version__} {result['model']} batch {a.batch} threads {result['threads']}: "
          f"{ms:.1f} ms/batch (median of {a.steps}), {result['images_per_s']:.1f} images/s")
    if a.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
