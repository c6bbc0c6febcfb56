"""What a runtime is: one thing that turns an input tensor into the raw output tensor. Nothing else —
preprocessing, decoding and NMS live once, in ``nanodet_deploy.processing``."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runtime(Protocol):
    backend: str     # "torch", "onnxruntime", ...
    precision: str   # what actually executes: "fp32", "fp16", "bf16", "int8"

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """[B, 3, H, W] float32 normalised BGR -> [B, N, C + 4*(reg_max+1)] float32."""
        ...
