"""Runtimes by backend name. Each module imports its backend's package; a missing package becomes one line
naming the extra to install."""

from __future__ import annotations

import importlib

from ..errors import MissingBackendError, UsageError
from .base import Runtime

# backend -> (module in this package, class, Python package it needs, pip extra that installs it)
BACKENDS = {
    "torch": ("torch", "TorchRuntime", "torch", "torch"),
    "onnxruntime": ("onnxruntime", "OnnxRuntime", "onnxruntime", "onnx"),
}


def runtime_class(backend: str):
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}' (available: {', '.join(BACKENDS)})")
    module, cls, package, extra = BACKENDS[backend]
    try:
        importlib.import_module(package)
    except ImportError:
        raise MissingBackendError(backend, package, extra) from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


__all__ = ["BACKENDS", "Runtime", "runtime_class"]
