"""NanoDetPlus = ShuffleNetV2 -> GhostPAN -> NanoDetPlusHead, as the deploy graph: one output tensor."""

from __future__ import annotations

import torch.nn as nn

from .backbone import ShuffleNetV2
from .head import NanoDetPlusHead
from .neck import GhostPAN


class NanoDetPlus(nn.Module):
    """Inference-only NanoDet-Plus. Parameter names equal the official ones (``backbone.*``, ``fpn.*``,
    ``head.*``); the training-only ``aux_fpn`` / ``aux_head`` are not built.

    ``forward(x)`` with ``x`` a normalised BGR batch [B, 3, H, W] returns ONE tensor [B, N, C + 4*(reg_max+1)]:
    sigmoid class scores, then distance logits; N points ordered stride 8 -> 64, row-major per level.
    """

    def __init__(self, backbone: ShuffleNetV2, fpn: GhostPAN, head: NanoDetPlusHead):
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.head = head

    def forward(self, x):
        return self.head(self.fpn(self.backbone(x)))


def build_model(spec) -> NanoDetPlus:
    """A randomly initialised model in eval mode from a ``config.ModelSpec`` (its ``backbone``, ``fpn`` and ``head``
    arguments); load weights with ``checkpoint.load_weights``."""
    model = NanoDetPlus(ShuffleNetV2(**spec.backbone), GhostPAN(**spec.fpn), NanoDetPlusHead(**spec.head))
    return model.eval()
