"""Runtimes by backend name, looked up in the one registry (``nanodet_deploy.targets``). Each module imports
its backend's package; a missing package becomes one line naming the extra to install."""

from __future__ import annotations

from pathlib import Path

from ..errors import ArtifactError, NanodetDeployError, UsageError, first_line
from ..manifest import pinned_files
from ..targets import BACKENDS, REFERENCE, get_backend
from .base import Runtime


def runtime_class(backend: str):
    return get_backend(backend).runtime_class()


def open_export(directory, manifest, threads: int | None = None, **options):
    """The runtime for an export folder whose manifest is read; ``options`` with None values are unset."""
    if manifest.backend not in BACKENDS or manifest.backend == REFERENCE.backend:
        raise UsageError(f"{directory}: nanodet.json names backend {manifest.backend!r}, not one that runs exports "
                         f"({', '.join(b for b in BACKENDS if b != REFERENCE.backend)})")
    target = get_backend(manifest.backend)
    options = {k: v for k, v in options.items() if v is not None}
    unsupported = set(options) - target.runtime_options
    if unsupported:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(unsupported))
        raise UsageError(f"{flags} does not apply to {manifest.backend} exports")
    cls = target.runtime_class()
    model_file = Path(directory) / manifest.files["model"]
    with pinned_files(directory, manifest) as files:  # the runtime loads the very bytes that were checked
        try:
            runtime = cls.from_export(files, manifest, threads=threads, **options)
        except NanodetDeployError as e:
            e.args = (_named(str(e), files, directory, manifest),)
            raise
        except Exception as e:  # each backend has its own exception types for a file it cannot parse
            raise ArtifactError(f"{model_file}: {manifest.backend} cannot load it "
                                f"({_named(first_line(e)[:200], files, directory, manifest)})") from None
    if runtime.input_format != manifest.input_format:
        raise ArtifactError(f"{model_file}: it takes {runtime.input_format} input, nanodet.json says "
                            f"{manifest.input_format}")
    for field, found, said in (("input name", runtime.input_name, manifest.input_name),
                               ("output name", runtime.output_name, manifest.output_name)):
        if found is not None and found != said:  # the blob names, where the backend tells them
            raise ArtifactError(f"{model_file}: its {field} is {found!r}, nanodet.json says {said!r}")
    if runtime.stored_precision is not None and runtime.stored_precision != manifest.precision:
        raise ArtifactError(f"{model_file}: holds a {runtime.stored_precision} model, nanodet.json says "
                            f"{manifest.precision}")
    check_against_manifest(runtime, manifest, directory)
    return runtime


def _named(message: str, files: dict, directory, manifest) -> str:
    """``message`` with the pinned /proc/self/fd/N paths replaced by the files' names in the folder."""
    for role, path in files.items():
        message = message.replace(str(path), str(Path(directory) / manifest.files[role]))
    return message


def check_against_manifest(runtime, manifest, directory) -> None:
    """One inference on zeros: the artifact must take the manifest's input size and give the output its
    class count, strides and reg_max imply. A manifest from another export would otherwise give wrong boxes
    silently (or fail deep inside a backend)."""
    import numpy as np

    from ..manifest import ManifestError

    from ..processing import BGR8_NHWC

    cfg = manifest.processing_config()
    width, height = cfg.input_size
    zeros = (np.zeros((1, height, width, 3), np.uint8) if runtime.input_format == BGR8_NHWC
             else np.zeros((1, 3, height, width), np.float32))
    try:
        output = runtime.run(zeros)
    except Exception as e:  # each backend has its own exception types for a shape it does not take
        raise ManifestError(f"{directory}: the model does not run on the manifest's {width}x{height} input "
                            f"({first_line(e)[:200]}); nanodet.json does not belong to this model") from None
    expected = (1, cfg.num_points, cfg.output_channels)
    if tuple(output.shape) != expected:
        raise ManifestError(f"{directory}: the model outputs {tuple(output.shape)}, nanodet.json describes "
                            f"{expected} ({cfg.num_classes} classes, {width}x{height} input, reg_max "
                            f"{cfg.reg_max}); it does not belong to this model")


__all__ = ["BACKENDS", "Runtime", "open_export", "runtime_class"]
