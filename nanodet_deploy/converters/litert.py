"""PyTorch -> LiteRT (formerly TensorFlow Lite) flatbuffer, ``model.tflite``.

From the module, not from our ONNX: ``litert_torch.convert`` (torch.export -> StableHLO -> the LiteRT
converter), which keeps our NCHW float input and output and inserts the layout transposes itself. Measured on
nanodet-plus-m_416 (litert-torch 0.10.0, ai-edge-litert 2.3.0, torch 2.13.0, 2-core AMD EPYC): 21 s, max |error|
2.8e-5 against PyTorch on a random input; the interpreter runs it on its XNNPACK delegate.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

from ..errors import ExportError

CALIBRATION_METHODS: tuple[str, ...] = ()
FLOAT_PARTS: dict = {}
DEFAULT_FLOAT_PARTS: tuple[str, ...] = ()
MODEL_FILE = "model.tflite"
# the converter's C++ (absl) logs one INFO line per model written; warnings and errors still show
QUIET_NATIVE_LOGS = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def convert(module, processing, directory: Path, precision: str = "fp32", calib_paths=(), progress=None,
            **options) -> tuple[dict[str, str], dict]:
    """The ``--to litert`` target: ``model.tflite`` for a [1, 3, H, W] float input. Returns (files, conversion)."""
    import torch

    litert_torch = _import_converter()
    width, height = processing.input_size
    steps = ("converting (torch.export, StableHLO, LiteRT)", "writing the flatbuffer")
    advance = progress("LiteRT: " + ", ".join(steps), len(steps)) if progress else (lambda: None)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # FutureWarnings of torch's pytree from inside the converter
            edge_model = litert_torch.convert(module.eval(), (torch.zeros(1, 3, height, width),))
            advance()
            edge_model.export(str(directory / MODEL_FILE))
    except Exception as e:  # the converter names the op it stopped at
        raise ExportError(f"LiteRT could not convert the model: {str(e).splitlines()[0] if str(e) else e!r}")
    advance()
    return {"model": MODEL_FILE}, {"exporter": "litert_torch.convert", "batch": 1}


def _import_converter():
    """litert_torch, imported with its console progress off (we show ours) and its import-time messages (absl,
    oneDNN, torchao's CUDA kernels) off the console."""
    from ..runtimes.base import native_output_silenced
    from ..runtimes.executorch import IMPORT_WARNINGS

    for key, value in QUIET_NATIVE_LOGS.items():
        os.environ.setdefault(key, value)
    with native_output_silenced(2, IMPORT_WARNINGS):
        import litert_torch
    litert_torch._config.config.show_progress = False  # its own rich console on stdout
    return litert_torch


def describe(conversion: dict) -> str:
    return "LiteRT flatbuffer (litert_torch.convert), XNNPACK at run time"


def embed_manifest(path: Path, manifest_json: str) -> None:
    """The manifest is the nanodet.json beside the flatbuffer."""


def embedded_manifest(path: Path) -> str | None:
    return None
