"""Writing files so a reader never sees half of one: write to a temporary sibling, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False):
    """Yields a temporary path in the same folder; renamed onto ``path`` only if the block succeeds.
    ``keep_suffix``: the temporary name ends like ``path`` (for writers that pick a format by it, as
    cv2.VideoWriter does)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=f".tmp{path.suffix}" if keep_suffix else ".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the mode open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def temporary_files_in(folder: str | Path):
    """Python's temporary files (``tempfile``: ours, ONNX Runtime's quantizer, pnnx's work folder) go into
    ``folder`` while the block runs: on the destination's file system, and removed with it on any exit."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder.resolve())  # absolute: converters run in other working folders (pnnx)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved
