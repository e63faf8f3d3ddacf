#!/usr/bin/env python3
"""The byte-level GPT of `warpnet lm` (sequential variant: pre-LN blocks, causal attention, GELU MLP of
4D, final LayerNorm and a linear head over 256 bytes) and its training step in plain PyTorch, timed the
way `warpnet lm bench` times it: a random batch of bytes, forward + cross-entropy + backward + AdamW
(betas 0.9, 0.95, eps 1e-8, weight decay 0.1 on matrices only), median over timed steps after warm-up.

PyTorch's standard fast settings: F.scaled_dot_product_attention(is_causal=True) (its fused kernel), the
AdamW implementation chosen by --adamw (foreach, PyTorch's default, or fused), and for bf16 autocast
around the forward and the loss (fp32 master weights). Prints one line, with --json one JSON line."""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCABULARY = 256  # bytes
EXPANSION = 4  # the MLP's hidden width over D


class Block(nn.Module):
    """x + A(LN1(x)), then + M(LN2(.)): (B, T, D) -> (B, T, D)."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.attn_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc, self.mlp_proj = nn.Linear(width, EXPANSION * width), nn.Linear(EXPANSION * width, width)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (p.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for p in self.qkv(self.ln1(x)).split(d, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D/H)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(F.gelu(self.fc(self.ln2(x))))


class Gpt(nn.Module):
    def __init__(self, blocks, width, heads, context):
        super().__init__()
        self.tokens = nn.Embedding(VOCABULARY, width)
        self.positions = nn.Parameter(torch.randn(context, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(blocks))
        self.ln_f, self.out = nn.LayerNorm(width), nn.Linear(width, VOCABULARY)

    def forward(self, tokens):  # (B, T) -> (B, T, 256)
        x = self.tokens(tokens) + self.positions[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.out(self.ln_f(x))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", default="cpu", help="cpu, or cuda:I")
    p.add_argument("--adamw", choices=["foreach", "fused"], default="foreach")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    net = Gpt(a.blocks, a.width, a.heads, a.context).to(device)
    matrices = [w for w in net.parameters() if w.dim() >= 2]
    others = [w for w in net.parameters() if w.dim() < 2]
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                            **({"fused": True} if a.adamw == "fused" else {"foreach": True}))
    tokens = torch.randint(VOCABULARY, (a.batch, a.context), device=device)
    targets = torch.randint(VOCABULARY, (a.batch, a.context), device=device)
    step_ms = []
    for i in range(a.warmup + a.steps):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = F.cross_entropy(net(tokens).view(-1, VOCABULARY).float(), targets.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # waits for the step on a GPU
        if i >= a.warmup:
            step_ms.append((time.perf_counter() - started) * 1e3)
    ms = statistics.median(step_ms)
    result = {
        "model": f"GPT-{a.blocks}x{a.width}",
        "parameters": sum(w.numel() for w in net.parameters()),
        "batch": a.batch, "context": a.context, "threads": torch.get_num_threads(),
        "precision": a.precision, "adamw": a.adamw, "device": a.device, "ms_per_step": ms,
        "tokens_per_s": a.batch * a.context / (ms / 1e3), "step_ms": step_ms,
    }
    print(f"pytorch {torch.__version__} {result['model']} ({result['parameters']} parameters) batch {a.batch} "
          f"x {a.context} threads {result['threads']} {a.device} {a.precision} adamw {a.adamw}: {ms:.1f} ms/step "
          f"(median of {a.steps}), {result['tokens_per_s']:.0f} tokens/s")
    if a.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
