"""OpenVINO on the CPU, driven as OpenVINO's own Python samples do: Core -> compile_model -> infer request.

The inference precision is explicit: on CPUs with AVX-512 BF16 OpenVINO runs "FP32" models in bf16 unless
told otherwise, so we always set INFERENCE_PRECISION_HINT and report what the compiled model says it runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openvino as ov

from ..errors import UsageError
from ..processing import BGR8_NHWC, FLOAT_NCHW

INFER_PRECISIONS = {"f32": "fp32", "bf16": "bf16"}  # --infer-precision -> how we name it


class OpenVinoRuntime:
    backend = "openvino"

    def __init__(self, model_path: str | Path, precision: str = "fp32", threads: int | None = None,
                 infer_precision: str = "f32", performance_hint: str = "LATENCY"):
        if infer_precision not in INFER_PRECISIONS:
            raise UsageError(f"--infer-precision must be one of {', '.join(INFER_PRECISIONS)}, got '{infer_precision}'")
        config = {"PERFORMANCE_HINT": performance_hint, "INFERENCE_PRECISION_HINT": infer_precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        model = core.read_model(str(model_path))
        self.stored_precision = stored_precision(model)
        # an IR with the normalisation in it (export --u8-input) takes the warped 8-bit image, NHWC
        self.input_format = BGR8_NHWC if model.input(0).get_element_type() == ov.Type.u8 else FLOAT_NCHW
        self._dtype = np.uint8 if self.input_format == BGR8_NHWC else np.float32
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()  # created once, reused by every run
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32" / "bf16"
        self.inference_precision = INFER_PRECISIONS.get(ran, ran)
        # what actually executes: int8 kernels where FakeQuantize sits, the rest in the inference precision
        self.precision = f"int8+{self.inference_precision}" if precision == "int8" else self.inference_precision
        self._lock = threading.Lock()  # one infer request: one call at a time

    @classmethod
    def from_export(cls, directory: Path, manifest, threads: int | None = None,
                    infer_precision: str | None = None) -> "OpenVinoRuntime":
        return cls(directory / manifest.files["model"], precision=manifest.precision, threads=threads,
                   infer_precision=infer_precision or "f32")

    def run(self, tensor: np.ndarray) -> np.ndarray:
        with self._lock:
            result = self.request.infer({0: np.ascontiguousarray(tensor, self._dtype)})
            return np.array(result[0])  # a copy: the request's output buffer is reused by the next call


def stored_precision(model) -> str:
    """What the IR holds: "int8" (FakeQuantize or integer weights from NNCF), "fp16" (FP16-compressed weights)
    or "fp32"."""
    ops = model.get_ops()
    if any(op.get_type_name() == "FakeQuantize" for op in ops):
        return "int8"
    constants = {op.get_output_element_type(0).get_type_name() for op in ops if op.get_type_name() == "Constant"}
    if constants & {"i8", "u8", "i4", "u4"}:
        return "int8"
    return "fp16" if "f16" in constants else "fp32"
