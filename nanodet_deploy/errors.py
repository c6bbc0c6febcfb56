"""Errors a user can cause. Library code raises these; only cli.py turns them into one line + exit code."""


def first_line(error: BaseException) -> str:
    """The first line of an exception raised by a library we call (its message may run to a traceback or a
    graph dump), or its type's name when it has no message: what a one-line error quotes."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class NanodetDeployError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with: 2 for bad usage/input, 1 for failures."""

    exit_code = 1


class UsageError(NanodetDeployError):
    """Options that do not fit together, or a value out of range."""

    exit_code = 2


class ConfigError(UsageError):
    """A model name or NanoDet YAML config we cannot build."""


class CheckpointError(UsageError):
    """A checkpoint file that is unreadable or does not match the model."""


class ArtifactError(UsageError):
    """An exported model file its backend cannot load or run, or one that is not what its manifest says."""


class ManifestError(UsageError):
    """A missing, malformed or inconsistent nanodet.json, or an export folder whose files do not match it."""


class NcnnFormatError(ArtifactError, ValueError):
    """A .param / .bin that cannot be read (the message names the file and the problem)."""


class ModelOutputError(NanodetDeployError):
    """A model output that post-processing refuses: NaN or Inf values (a broken or mis-converted model)."""


class ExportError(NanodetDeployError):
    """A conversion that failed: a converter tool's error, a graph it could not handle."""


class ImageError(NanodetDeployError):
    """An image that cannot be read or decoded."""


class DownloadError(NanodetDeployError):
    """A zoo checkpoint that could not be fetched (offline, bad checksum)."""


class MissingBackendError(UsageError):
    """A backend whose Python package is not installed."""

    def __init__(self, backend: str, module: str, extra: str):
        super().__init__(
            f"backend '{backend}' needs the Python package '{module}', which is not installed: "
            f"pip install 'nanodet-deploy[{extra}]'"
        )


class BuildError(NanodetDeployError):
    """A native build (ncnn or the app's core, for the host or for aarch64) failed: the message names its log."""


class NotRegularFile(OSError):
    """A path that names a FIFO, device, socket or folder where a file's bytes were expected (files.open_regular);
    an OSError, so readers that report OSErrors report it as one line."""

    def __init__(self, path):
        super().__init__(0, "not a regular file", str(path))


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI timeout, ``docker stop``), raised by the CLI's handler: unwinds like Ctrl-C, so every
    ``finally`` removes its staging and temporary folders and child converters are ended; what tells the two
    apart (videos.py: Ctrl-C is a camera's normal end, SIGTERM never is)."""
