"""LiteRT (formerly TensorFlow Lite) through ``ai_edge_litert.interpreter``, on its default XNNPACK delegate with
the thread count set explicitly."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .base import Runtime, load_quietly


class LiteRtRuntime(Runtime):
    backend = "litert"

    def __init__(self, model_path: str | Path, precision: str = "fp32", threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        def load():
            interpreter = Interpreter(model_path=str(model_path), num_threads=threads or 1)
            interpreter.allocate_tensors()
            return interpreter

        # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr, and the verifier's reasons
        self._interpreter = load_quietly(load, model_path, "LiteRT")
        (self._input,), (self._output,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        self._lock = threading.Lock()  # an interpreter holds one set of tensors: one call at a time
        self.precision = precision

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None) -> "LiteRtRuntime":
        return cls(files["model"], precision=manifest.precision, threads=threads)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        tensor = np.ascontiguousarray(tensor, np.float32)
        outputs = []
        with self._lock:
            for image in tensor:  # the model was converted for batch 1
                self._interpreter.set_tensor(self._input["index"], image[None])
                self._interpreter.invoke()
                outputs.append(self._interpreter.get_tensor(self._output["index"]))  # a copy
        return np.concatenate(outputs, axis=0)
