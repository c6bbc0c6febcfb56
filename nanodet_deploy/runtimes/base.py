"""What a runtime is: one thing that turns an input tensor into the raw output tensor. Nothing else —
preprocessing, decoding and NMS live once, in ``nanodet_deploy.processing``."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..processing import FLOAT_NCHW


class Runtime:
    """One backend's runtime (a module in ``nanodet_deploy.runtimes``, named by a row of ``targets.py``).

    Every capability a caller may use is declared here with its default; a runtime overrides what its backend
    can do or tell, and callers never probe for attributes."""

    backend: str = ""                    # the registry's backend name: "torch", "onnxruntime", ...
    precision: str = "fp32"              # what actually executes: "fp32", "fp16", "bf16", "int8", "int8+fp32"
    input_format: str = FLOAT_NCHW       # processing.FLOAT_NCHW, or BGR8_NHWC for a model that normalises itself
    reads_stored_precision: bool = False  # whether it can tell what the model file holds: then ``stored_precision``
    stored_precision: str | None = None   # is set, and ``open_export`` checks it against the manifest
    input_name: str | None = None        # the model's input and output blob names, where the backend tells them
    output_name: str | None = None       # (checked against the manifest by ``open_export``)

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None, **options) -> "Runtime":
        """The runtime for an export whose manifest (``nanodet_deploy.manifest.Manifest``) is read and checked;
        ``files`` maps each role of ``manifest.files`` to the path to load (``manifest.pinned_files``: the very
        bytes that were hashed), ``options`` are the row's ``runtime_options`` (e.g. ``infer_precision``). Export
        runtimes implement it; the PyTorch reference is built from a module instead."""
        raise NotImplementedError(f"{cls.__name__} does not open exports")

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """The input ``input_format`` names — [B, 3, H, W] float32 normalised BGR (FLOAT_NCHW) or [B, H, W, 3]
        uint8 warped BGR (BGR8_NHWC, ``export --u8-input``) — -> [B, N, C + 4*(reg_max+1)] float32.
        Thread-safe."""
        raise NotImplementedError

    def run_stream(self, tensors: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``run`` over a stream of inputs, results in order. A backend with asynchronous requests overlaps them
        (OpenVINO's throughput mode); by default one at a time."""
        return map(self.run, tensors)


class SingleImageRuntime(Runtime):
    """A runtime whose model takes batch 1 and holds one set of buffers (an ExecuTorch method, a LiteRT
    interpreter): ``run`` feeds a batch image by image, one call at a time (``run_one``)."""

    def __init__(self):
        self._lock = threading.Lock()

    def run(self, tensor: np.ndarray) -> np.ndarray:
        tensor = np.ascontiguousarray(tensor, np.float32)
        with self._lock:
            return np.concatenate([self.run_one(image[None]) for image in tensor], axis=0)

    def run_one(self, tensor: np.ndarray) -> np.ndarray:
        """[1, 3, H, W] -> [1, N, C + 4*(reg_max+1)], a new array (the next call may reuse the model's buffers)."""
        raise NotImplementedError


@contextlib.contextmanager
def native_output_silenced(fd: int = 1, loggers: tuple[str, ...] = ()):
    """File descriptor ``fd`` (1 stdout, 2 stderr) away from the console, and the Python ``loggers`` named quiet
    below ERROR, for the duration: a backend library that prints from C++ (MNN on stdout when it loads;
    ExecuTorch's CPU probe and loader on stderr) or warns on import about parts we do not use keeps the CLI's
    output clean. Yields ``said()``: the lines written to ``fd`` so far, for an error message that needs them."""
    import tempfile

    saved_levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        def said() -> list[str]:
            sink.seek(0)
            return sink.read(1 << 16).decode(errors="replace").splitlines()

        try:
            os.dup2(sink.fileno(), fd)
            yield said
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)


def load_quietly(load, path, library: str):
    """``load()`` with the library's C++ messages (fd 2) off the console. A library that explains a bad file only
    on stderr (ExecuTorch's loader, LiteRT's flatbuffer verifier) still gets its reason into the one-line error:
    ArtifactError naming ``path`` with the library's last message."""
    from ..errors import ArtifactError, first_line

    with native_output_silenced(2) as said:
        try:
            return load()
        except Exception as e:
            reason = next((line.split("] ", 1)[-1] for line in reversed(said()) if line.strip()), first_line(e))
            raise ArtifactError(f"{path}: {library} cannot load it ({reason})") from None
