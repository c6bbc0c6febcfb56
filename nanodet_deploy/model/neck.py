"""Ghost-PAN neck (NanoDet-Plus): top-down and bottom-up paths of GhostBottlenecks plus extra levels."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .layers import ConvModule, DepthwiseConvModule, make_activation


class GhostModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, activation: str | None, ratio: int = 2,
                 dw_size: int = 3):
        super().__init__()
        init_channels = math.ceil(out_channels / ratio)
        new_channels = init_channels * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_channels, init_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(init_channels),
            make_activation(activation),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels, bias=False),
            nn.BatchNorm2d(new_channels),
            make_activation(activation),
        )

    def forward(self, x):
        x1 = self.primary_conv(x)
        return torch.cat([x1, self.cheap_operation(x1)], dim=1)


class GhostBottleneck(nn.Module):
    """GhostNet bottleneck with stride 1 and no squeeze-excite: the only form Ghost-PAN uses."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, dw_kernel_size: int,
                 activation: str):
        super().__init__()
        self.ghost1 = GhostModule(in_channels, mid_channels, activation)
        self.ghost2 = GhostModule(mid_channels, out_channels, None)
        if in_channels == out_channels:
            self.shortcut = nn.Sequential()
        else:
            pad = (dw_kernel_size - 1) // 2
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, dw_kernel_size, 1, pad, groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        return self.ghost2(self.ghost1(x)) + self.shortcut(x)


class GhostBlocks(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, expand: float, kernel_size: int, num_blocks: int,
                 use_res: bool, activation: str):
        super().__init__()
        self.use_res = use_res
        if use_res:
            self.reduce_conv = ConvModule(in_channels, out_channels, 1, activation=activation)
        self.blocks = nn.Sequential(*[
            GhostBottleneck(in_channels, int(out_channels * expand), out_channels, kernel_size, activation)
            for _ in range(num_blocks)
        ])

    def forward(self, x):
        out = self.blocks(x)
        return out + self.reduce_conv(x) if self.use_res else out


class GhostPAN(nn.Module):
    def __init__(self, in_channels, out_channels: int, use_depthwise: bool = True, kernel_size: int = 5,
                 expand: float = 1, num_blocks: int = 1, use_res: bool = False, num_extra_level: int = 1,
                 upsample_mode: str = "bilinear", activation: str = "LeakyReLU"):
        super().__init__()
        self.in_channels = list(in_channels)
        levels = len(self.in_channels)
        down_conv = DepthwiseConvModule if use_depthwise else ConvModule
        self.upsample = nn.Upsample(scale_factor=2, mode=upsample_mode)
        self.reduce_layers = nn.ModuleList(
            ConvModule(c, out_channels, 1, activation=activation) for c in self.in_channels)

        def ghost_blocks():
            return GhostBlocks(out_channels * 2, out_channels, expand, kernel_size, num_blocks, use_res, activation)

        def stride2_conv():
            return down_conv(out_channels, out_channels, kernel_size, stride=2, padding=kernel_size // 2,
                             activation=activation)

        self.top_down_blocks = nn.ModuleList(ghost_blocks() for _ in range(levels - 1))
        self.downsamples = nn.ModuleList(stride2_conv() for _ in range(levels - 1))
        self.bottom_up_blocks = nn.ModuleList(ghost_blocks() for _ in range(levels - 1))
        self.extra_lvl_in_conv = nn.ModuleList(stride2_conv() for _ in range(num_extra_level))
        self.extra_lvl_out_conv = nn.ModuleList(stride2_conv() for _ in range(num_extra_level))

    def forward(self, inputs):
        inputs = [reduce(x) for x, reduce in zip(inputs, self.reduce_layers)]
        levels = len(inputs)
        # top-down: upsample the coarser map, concatenate with the finer one
        inner_outs = [inputs[-1]]
        for idx in range(levels - 1, 0, -1):
            upsampled = self.upsample(inner_outs[0])
            block = self.top_down_blocks[levels - 1 - idx]
            inner_outs.insert(0, block(torch.cat([upsampled, inputs[idx - 1]], 1)))
        # bottom-up: downsample the finer output, concatenate with the top-down map
        outs = [inner_outs[0]]
        for idx in range(levels - 1):
            downsampled = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([downsampled, inner_outs[idx + 1]], 1)))
        # extra levels: from the reduced coarsest input plus the last output
        for in_conv, out_conv in zip(self.extra_lvl_in_conv, self.extra_lvl_out_conv):
            outs.append(in_conv(inputs[-1]) + out_conv(outs[-1]))
        return outs
