"""warpnet's network in PyTorch, with the same parameter names, so that a state dict exported by
`warpnet convert --pytorch FILE` loads strictly:

    from safetensors.torch import load_file
    from warpnet_torch import WRN
    net = WRN(units=2, width=4, classes=10)
    net.load_state_dict(load_file("export.safetensors"))
    net.eval()

The WRN of the paper's Table 1: stem Conv3x3-BN-ReLU, concatenation to 16kw channels, three stages of
residual units F = BN-Conv3x3-BN-ReLU-Conv3x3-BN with identity skips, 2x2 average pooling and channel
concatenation between stages, head BN-ReLU-global average pool-Linear. A WarpNet's weights are the
same tensors: exported, they run here as the sequential network they approximate.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

STEM_CHANNELS = 16  # Table 1: the stem's output, before concatenation to 16kw
STAGES = 3


def conv3x3(c_in, c_out):
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class Unit(nn.Module):
    """The residual branch F; the skip is added by the caller."""

    def __init__(self, c):
        super().__init__()
        self.bn0, self.conv1, self.bn1 = nn.BatchNorm2d(c), conv3x3(c, c), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = conv3x3(c, c), nn.BatchNorm2d(c)

    def forward(self, x):  # (B, C, H, W) -> (B, C, H, W)
        h = F.relu(self.bn1(self.conv1(self.bn0(x))))
        return self.bn2(self.conv2(h))


class WRN(nn.Module):
    def __init__(self, units, width, classes, in_channels=3):
        super().__init__()
        self.width = width
        self.stem = nn.ModuleDict({"conv": conv3x3(in_channels, STEM_CHANNELS), "bn": nn.BatchNorm2d(STEM_CHANNELS)})
        for s in range(STAGES):
            c = STEM_CHANNELS * width * 2**s
            setattr(self, f"stage{s + 1}", nn.ModuleDict({f"unit{u + 1}": Unit(c) for u in range(units)}))
        c = STEM_CHANNELS * width * 2 ** (STAGES - 1)
        self.head = nn.ModuleDict({"bn": nn.BatchNorm2d(c), "fc": nn.Linear(c, classes)})

    def forward(self, x):  # (B, in, H, W) -> (B, classes)
        h = F.relu(self.stem["bn"](self.stem["conv"](x))).repeat(1, self.width, 1, 1)  # (B, 16kw, H, W)
        for s in range(STAGES):
            if s > 0:  # (B, C, H, W) -> (B, 2C, H/2, W/2)
                pooled = F.avg_pool2d(h, 2)
                h = torch.cat([pooled, pooled], 1)
            for unit in getattr(self, f"stage{s + 1}").values():
                h = h + unit(h)
        h = F.relu(self.head["bn"](h)).mean(dim=(2, 3))  # (B, 64kw)
        return self.head["fc"](h)
