"""The PyTorch reference runtime: the model every exported artifact is measured against."""

from __future__ import annotations

import threading

import numpy as np
import torch

from .base import Runtime


class TorchRuntime(Runtime):
    backend = "torch"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model.eval()
        if threads:
            torch.set_num_threads(threads)  # process-wide in PyTorch; there is no per-module setting
        self._lock = threading.Lock()  # one forward at a time: torch's intra-op pool is shared anyway

    def run(self, tensor: np.ndarray) -> np.ndarray:
        with self._lock, torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(tensor, np.float32))).numpy()
