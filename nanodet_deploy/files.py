"""Writing files so a reader never sees half of one (write to a temporary sibling, then rename), the user cache,
hashing and downloads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import NotRegularFile


_UMASK = os.umask(0)
os.umask(_UMASK)


def open_regular(path: str | Path):
    """``path`` opened for binary reading, if it is a regular file; NotRegularFile otherwise. O_NONBLOCK makes
    opening a FIFO without a writer return at once (a plain open() waits forever); fstat then checks what was
    opened, not what the path named a moment before. Reads of a regular file are unaffected by O_NONBLOCK."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class StagedFile:
    """A file written under a hidden temporary name in its destination's folder (the same file system, so
    publishing is a rename), then published under its name — or under another, e.g. a partial result's — or
    discarded. ``keep_suffix``: the temporary name ends like ``path`` (for writers that pick a format by it, as
    cv2.VideoWriter does)."""

    def __init__(self, path: str | Path, keep_suffix: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=f".tmp{self.path.suffix}" if keep_suffix else ".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the mode open() would
        self.tmp = Path(tmp)

    def publish(self, final: Path | None = None) -> Path:
        final = final or self.path
        os.replace(self.tmp, final)
        return final

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False):
    """Yields a temporary path in the same folder; renamed onto ``path`` only if the block succeeds."""
    staged = StagedFile(path, keep_suffix)
    try:
        yield staged.tmp
        staged.publish()
    finally:
        staged.discard()


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


def cache_dir() -> Path:
    """The user cache: release checkpoints, bench exports, the emulated phone's build (NANODET_DEPLOY_CACHE)."""
    return Path(os.environ.get("NANODET_DEPLOY_CACHE") or Path.home() / ".cache" / "nanodet-deploy")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, out, label: str | None, timeout: float = 30.0) -> str:
    """``url`` into the open binary file ``out`` (a progress bar on stderr labelled ``label`` unless None);
    returns the SHA-256 of what was written."""
    import urllib.request

    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        if label is None:
            while block := response.read(1 << 16):
                digest.update(block)
                out.write(block)
            return digest.hexdigest()
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        with Progress(TextColumn("downloading {task.description}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(label, total=total)
            while block := response.read(1 << 16):
                digest.update(block)
                out.write(block)
                bar.advance(task, len(block))
    return digest.hexdigest()
