"""What a runtime is: one thing that turns an input tensor into the raw output tensor. Nothing else —
preprocessing, decoding and NMS live once, in ``nanodet_deploy.processing``."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Runtime(Protocol):
    """One backend's runtime (a module in ``nanodet_deploy.runtimes``, named by a row of ``targets.py``)."""

    backend: str     # the registry's backend name: "torch", "onnxruntime", ...
    precision: str   # what actually executes: "fp32", "fp16", "bf16", "int8"
    # optional: ``stored_precision`` (what the model file holds, where the backend can tell), checked against
    # the manifest by ``open_export``

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None, **options) -> "Runtime":
        """The runtime for an export whose manifest (``nanodet_deploy.manifest.Manifest``) is read and checked;
        ``files`` maps each role of ``manifest.files`` to the path to load (``manifest.pinned_files``: the very
        bytes that were hashed), ``options`` are the row's ``runtime_options`` (e.g. ``infer_precision``). Export
        runtimes implement it; the PyTorch reference is built from a module instead."""
        ...

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """[B, 3, H, W] float32 normalised BGR -> [B, N, C + 4*(reg_max+1)] float32. Thread-safe."""
        ...
