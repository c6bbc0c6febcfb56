"""ExecuTorch through its Python runtime (``executorch.runtime``): the program's ``forward`` with the XNNPACK
delegate linked in.

Threads: XNNPACK runs on ExecuTorch's one process-wide thread pool. Its only setter is the private
``_unsafe_reset_threadpool`` (executorch 1.5), so a runtime asked for a thread count resets the pool when it
opens; all ExecuTorch runtimes in a process share the last count set.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from .base import SingleImageRuntime, load_quietly, native_output_silenced

METHOD = "forward"
_POOL_LOCK = threading.Lock()
# importing executorch imports torchao, which warns about its CUDA kernels and an Enum registration (torch 2.13)
IMPORT_WARNINGS = ("torchao", "torch.utils._pytree")


class ExecuTorchRuntime(SingleImageRuntime):
    backend = "executorch"

    def __init__(self, program_path: str | Path, precision: str = "fp32", threads: int | None = None):
        with native_output_silenced(2, IMPORT_WARNINGS):
            from executorch.runtime import Runtime as ProgramLoader
        set_threads(threads)
        super().__init__()
        self._method = load_quietly(lambda: ProgramLoader.get().load_program(Path(program_path)).load_method(METHOD),
                                    program_path, "ExecuTorch")
        self.precision = precision

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None) -> "ExecuTorchRuntime":
        return cls(files["model"], precision=manifest.precision, threads=threads)

    def run_one(self, tensor: np.ndarray) -> np.ndarray:
        import torch

        result = self._method.execute([torch.from_numpy(tensor.copy())])[0]
        return result.numpy().copy()  # the method's output buffer is reused by the next call


def set_threads(threads: int | None) -> None:
    """``threads`` for the process-wide pool (None: ExecuTorch's own choice). The pool probes the CPU the first
    time it is touched and prints what it could not read (/sys/devices/soc0, ARM's MIDR) on stderr from C++."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    with _POOL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning: the thread pool calls are marked experimental
        with native_output_silenced(2):
            current = _threadpool_get_thread_count()
        if threads and current != threads:
            _unsafe_reset_threadpool(threads)
