"""NanoDetPlusHead, inference path: per-level depthwise conv stacks and one 1x1 conv giving class logits and
the GFL distance distribution (4 sides x reg_max+1 bins)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import ConvModule, DepthwiseConvModule


class Integral(nn.Module):
    """Holds NanoDet's ``project`` buffer (0..reg_max) so checkpoints load with their exact keys. The integral
    itself is computed in ``nanodet_deploy.processing.decode`` — the one decoder every backend shares."""

    def __init__(self, reg_max: int):
        super().__init__()
        self.register_buffer("project", torch.linspace(0, reg_max, reg_max + 1))


class NanoDetPlusHead(nn.Module):
    def __init__(self, num_classes: int, input_channel: int, feat_channels: int = 96, stacked_convs: int = 2,
                 kernel_size: int = 5, strides=(8, 16, 32, 64), conv_type: str = "DWConv", reg_max: int = 7,
                 activation: str = "LeakyReLU"):
        super().__init__()
        if conv_type not in ("DWConv", "Conv"):
            raise ValueError(f"NanoDetPlusHead conv_type must be 'DWConv' or 'Conv', got '{conv_type}'")
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = tuple(strides)
        conv = DepthwiseConvModule if conv_type == "DWConv" else ConvModule
        self.distribution_project = Integral(reg_max)
        self.cls_convs = nn.ModuleList(
            nn.ModuleList(
                conv(input_channel if i == 0 else feat_channels, feat_channels, kernel_size,
                     padding=kernel_size // 2, activation=activation)
                for i in range(stacked_convs))
            for _ in self.strides)
        self.gfl_cls = nn.ModuleList(
            nn.Conv2d(feat_channels, num_classes + 4 * (reg_max + 1), 1) for _ in self.strides)

    def forward(self, feats):
        """[B, N, C + 4*(reg_max+1)]: sigmoid class scores, then raw distance logits; points stride 8 -> 64,
        row-major within a level (the layout of NanoDet's own ONNX export)."""
        outputs = []
        for feat, convs, gfl_cls in zip(feats, self.cls_convs, self.gfl_cls):
            for conv in convs:
                feat = conv(feat)
            out = gfl_cls(feat)
            cls_logits, reg_logits = out.split([self.num_classes, 4 * (self.reg_max + 1)], dim=1)
            outputs.append(torch.cat([cls_logits.sigmoid(), reg_logits], dim=1).flatten(start_dim=2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)
