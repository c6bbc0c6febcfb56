"""LiteRT (formerly TensorFlow Lite) through ``ai_edge_litert.interpreter``, on its default XNNPACK delegate with
the thread count set explicitly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import SingleImageRuntime, load_quietly


class LiteRtRuntime(SingleImageRuntime):
    backend = "litert"
    reads_stored_precision = True

    def __init__(self, model_path: str | Path, precision: str = "fp32", threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        def load():
            interpreter = Interpreter(model_path=str(model_path), num_threads=threads or 1)
            interpreter.allocate_tensors()
            return interpreter

        # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr, and the verifier's reasons
        super().__init__()
        self._interpreter = load_quietly(load, model_path, "LiteRT")
        (self._input,), (self._output,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        self.stored_precision = stored_precision(self._interpreter.get_tensor_details())
        # FP16 is the weights' storage: XNNPACK widens them when it loads the model and computes in float32
        self.precision = "fp32" if precision == "fp16" else precision

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None) -> "LiteRtRuntime":
        return cls(files["model"], precision=manifest.precision, threads=threads)

    def run_one(self, tensor: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input["index"], quantized(tensor, self._input))
        self._interpreter.invoke()
        return dequantized(self._interpreter.get_tensor(self._output["index"]), self._output)  # a copy


def stored_precision(tensors: list[dict]) -> str:
    """What the model holds: int8 tensors (a quantized model), float16 weights (the FP16 format), else fp32."""
    kinds = {np.dtype(t["dtype"]) for t in tensors}
    return "int8" if np.dtype(np.int8) in kinds else "fp16" if np.dtype(np.float16) in kinds else "fp32"


# An INT8 model whose first convolution is quantized gets an int8 input tensor from the LiteRT converter (the
# input's quantize folded into the tensor type; measured with --keep-float none); callers never see that: the
# runtime converts with the model's own scale and zero point, as the model's quantize op would.
def quantized(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(detail["dtype"])


def dequantized(values: np.ndarray, detail: dict) -> np.ndarray:
    if values.dtype == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
