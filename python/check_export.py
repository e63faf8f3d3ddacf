#!/usr/bin/env python3
"""Loads a `warpnet convert --pytorch` export into warpnet_torch.WRN (strictly) and compares its eval-mode
logits with warpnet's on the same images.

    python3 python/check_export.py EXPORT.safetensors REFERENCE.safetensors --units U --width W --classes C

REFERENCE holds `images` (N, 3, 32, 32) and `logits` (N, classes) computed by warpnet. Exit code 0 when
the largest difference is below --tolerance, 1 otherwise; prints the difference.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from warpnet_torch import WRN  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export")
    p.add_argument("reference")
    p.add_argument("--units", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--tolerance", type=float, default=1e-4)
    a = p.parse_args()
    net = WRN(a.units, a.width, a.classes)
    net.load_state_dict(load_file(a.export), strict=True)
    net.eval()
    reference = load_file(a.reference)
    with torch.no_grad():
        logits = net(reference["images"])
    difference = (logits - reference["logits"]).abs().max().item()
    print(f"max |pytorch - warpnet| = {difference:.3g}")
    sys.exit(0 if difference < a.tolerance else 1)


if __name__ == "__main__":
    main()
