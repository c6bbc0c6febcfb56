"""Runtimes by backend name. Each module imports its backend's package; a missing package becomes one line
naming the extra to install."""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import MissingBackendError, UsageError
from .base import Runtime

# backend -> (module in this package, class, Python package it needs, pip extra that installs it)
BACKENDS = {
    "torch": ("torch", "TorchRuntime", "torch", "torch"),
    "onnxruntime": ("onnxruntime", "OnnxRuntime", "onnxruntime", "onnx"),
    "openvino": ("openvino", "OpenVinoRuntime", "openvino", "openvino"),
    "mnn": ("mnn", "MnnRuntime", "MNN", "mnn"),
    "ncnn": ("ncnn", "NcnnRuntime", "ncnn", "ncnn"),
}


def runtime_class(backend: str):
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}' (available: {', '.join(BACKENDS)})")
    module, cls, package, extra = BACKENDS[backend]
    if importlib.util.find_spec(package) is None:  # found, not imported: importing is the runtime's business
        raise MissingBackendError(backend, package, extra)
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


# Options a backend's runtime takes beyond threads (everything else is in the manifest).
RUNTIME_OPTIONS = {"openvino": {"infer_precision"}}


def open_export(directory, manifest, threads: int | None = None, **options):
    """The runtime for an export folder whose manifest is read; ``options`` with None values are unset."""
    options = {k: v for k, v in options.items() if v is not None}
    unsupported = set(options) - RUNTIME_OPTIONS.get(manifest.backend, set())
    if unsupported:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(unsupported))
        raise UsageError(f"{flags} does not apply to {manifest.backend} exports")
    return runtime_class(manifest.backend).from_export(directory, manifest, threads=threads, **options)


__all__ = ["BACKENDS", "Runtime", "open_export", "runtime_class"]
