"""ShuffleNetV2 backbone as NanoDet builds it (no last conv; outputs of stages 2-4)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import make_activation

# Channels of conv1 and stages 2-4 per width multiplier (torchvision / NanoDet tables).
STAGE_CHANNELS = {
    "0.5x": (24, 48, 96, 192),
    "1.0x": (24, 116, 232, 464),
    "1.5x": (24, 176, 352, 704),
    "2.0x": (24, 244, 488, 976),
}
STAGE_REPEATS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, c, h, w)


class ShuffleV2Block(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str):
        super().__init__()
        self.stride = stride
        branch = out_channels // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, branch, 1, bias=False),
                nn.BatchNorm2d(branch),
                make_activation(activation),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels if stride > 1 else branch, branch, 1, bias=False),
            nn.BatchNorm2d(branch),
            make_activation(activation),
            nn.Conv2d(branch, branch, 3, stride, 1, groups=branch, bias=False),
            nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False),
            nn.BatchNorm2d(branch),
            make_activation(activation),
        )

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, model_size: str = "1.0x", out_stages=(2, 3, 4), activation: str = "LeakyReLU"):
        super().__init__()
        if model_size not in STAGE_CHANNELS:
            raise ValueError(f"ShuffleNetV2 model_size must be one of {list(STAGE_CHANNELS)}, got '{model_size}'")
        if not set(out_stages) <= {2, 3, 4}:
            raise ValueError(f"ShuffleNetV2 out_stages must be within 2..4, got {list(out_stages)}")
        self.out_stages = tuple(out_stages)
        channels = STAGE_CHANNELS[model_size]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            make_activation(activation),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = channels[0]
        for stage, repeats, out_ch in zip((2, 3, 4), STAGE_REPEATS, channels[1:]):
            blocks = [ShuffleV2Block(in_ch, out_ch, 2, activation)]
            blocks += [ShuffleV2Block(out_ch, out_ch, 1, activation) for _ in range(repeats - 1)]
            setattr(self, f"stage{stage}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.out_channels = [channels[s - 1] for s in self.out_stages]

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        outputs = []
        for stage in (2, 3, 4):
            x = getattr(self, f"stage{stage}")(x)
            if stage in self.out_stages:
                outputs.append(x)
        return outputs
