"""MNN through its Express module API (``MNN.nn.load_module_from_file``), the stable fast path of MNN's
Python bindings; the module is created once."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .base import Runtime, native_output_silenced


with native_output_silenced(1):  # MNN prints from C++ on import: the CLI's stdout stays clean
    import MNN  # noqa: F401
    import MNN.expr as F
    import MNN.nn as nn


def load_module(path: str | Path, threads: int | None = None, input_name: str = "data",
                output_name: str = "output"):
    # precision "high": FP32 arithmetic (x86 has no FP16 arithmetic in MNN; "low" would allow it on ARM)
    config = {"backend": "CPU", "precision": "high", "numThread": threads or 1}
    with native_output_silenced(1):  # "MNN use high precision"
        runtime = nn.create_runtime_manager((config,))
        return nn.load_module_from_file(str(path), [input_name], [output_name], runtime_manager=runtime)


class MnnRuntime(Runtime):
    backend = "mnn"

    def __init__(self, model_path: str | Path, precision: str = "fp32", threads: int | None = None,
                 input_name: str = "data", output_name: str = "output"):
        self.module = load_module(model_path, threads, input_name, output_name)
        # FP16 and weight-only INT8 models store smaller weights and compute in FP32 on this CPU path
        self.precision = {"fp16": "fp32", "weight-int8": "fp32"}.get(precision, precision)
        self._lock = threading.Lock()

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None) -> "MnnRuntime":
        """``files``: role -> path of each manifest file (manifest.pinned_files)."""
        return cls(files["model"], precision=manifest.precision, threads=threads,
                   input_name=manifest.input_name, output_name=manifest.output_name)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        tensor = np.ascontiguousarray(tensor, np.float32)  # kept alive for the whole call
        with self._lock:
            output = self.module.forward([F.const(tensor, list(tensor.shape), F.NCHW)])[0]
            return np.array(output.read())
