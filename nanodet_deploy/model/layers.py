"""Conv building blocks with NanoDet's exact attribute names (``conv``/``bn``, ``depthwise``/``dwnorm``/...)
so official checkpoints load without renaming."""

from __future__ import annotations

import torch.nn as nn

# NanoDet's ``act_layers``: the names its YAML configs use. LeakyReLU's slope 0.1 is NanoDet's, not torch's.
ACTIVATIONS = {
    "ReLU": lambda: nn.ReLU(inplace=True),
    "LeakyReLU": lambda: nn.LeakyReLU(negative_slope=0.1, inplace=True),
    "ReLU6": lambda: nn.ReLU6(inplace=True),
    "SELU": lambda: nn.SELU(inplace=True),
    "ELU": lambda: nn.ELU(inplace=True),
    "GELU": lambda: nn.GELU(),
    "PReLU": lambda: nn.PReLU(),
    "SiLU": lambda: nn.SiLU(inplace=True),
    "HardSwish": lambda: nn.Hardswish(inplace=True),
    "Hardswish": lambda: nn.Hardswish(inplace=True),
}


def make_activation(name: str | None) -> nn.Module:
    """An activation module by NanoDet name; ``None`` gives identity (an empty Sequential, as NanoDet does)."""
    if not name:
        return nn.Sequential()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}' (known: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


class ConvModule(nn.Module):
    """conv -> BatchNorm -> activation, named like NanoDet's ConvModule with ``norm_cfg=BN``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, activation: str | None = "LeakyReLU"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_activation(activation)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DepthwiseConvModule(nn.Module):
    """depthwise conv -> BN -> act -> pointwise conv -> BN -> act (NanoDet's DepthwiseConvModule)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, activation: str | None = "LeakyReLU"):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.dwnorm = nn.BatchNorm2d(in_channels)
        self.pwnorm = nn.BatchNorm2d(out_channels)
        self.act = make_activation(activation)

    def forward(self, x):
        x = self.act(self.dwnorm(self.depthwise(x)))
        return self.act(self.pwnorm(self.pointwise(x)))
