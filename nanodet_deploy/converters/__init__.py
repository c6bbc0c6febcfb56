"""Converters: one module per target format, named by a row of ``nanodet_deploy.targets``. Each module is a
``Converter``: the functions and recipe constants below, nothing else is asked of it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Converter(Protocol):
    """What ``export()`` calls on a converter module.

    Recipe constants, each beside the measurement that chose it: ``CALIBRATION_METHODS`` (the INT8 methods
    it takes, empty when the backend chooses ranges itself), ``DEFAULT_METHOD``, ``FLOAT_PARTS`` (part name ->
    what it selects) and ``DEFAULT_FLOAT_PARTS``."""

    CALIBRATION_METHODS: tuple[str, ...]
    FLOAT_PARTS: dict
    DEFAULT_FLOAT_PARTS: tuple[str, ...]

    def convert(self, module, processing, directory: Path, precision: str = "fp32", calib_paths=(),
                progress=None, **options) -> tuple[dict[str, str], dict]:
        """Write the artifact of the PyTorch ``module`` in ``precision`` into ``directory``. ``processing`` is
        the ProcessingConfig (calibration images go through the same preprocessing); ``options`` are only the
        ones its registry row accepts and the user gave (opset, dynamic_batch, calib_method, keep_float,
        u8_input). Returns (files: role -> file name, with at least "model"; the conversion record for the
        manifest — "input_format" there when the model takes other than processing.FLOAT_NCHW). The manifest
        records the versions of the registry row's packages."""
        ...

    def describe(self, conversion: dict) -> str:
        """One line on what was made, for the export summary."""
        ...

    def embed_manifest(self, path: Path, manifest_json: str) -> None:
        """Store the manifest inside the model file where the format has room (a no-op otherwise)."""
        ...

    def embedded_manifest(self, path: Path) -> str | None:
        ...


def int8_help(what: str) -> str:
    """Each target's INT8 calibration methods (``what="methods"``, default first) or its default float parts
    (``"parts"``), read from its converter module, for ``--help``."""
    import importlib

    from ..targets import TARGETS

    parts = []
    for t in TARGETS.values():
        if t.converter is None or "int8" not in t.precisions:
            continue
        module = importlib.import_module(t.converter)
        method, float_parts = t.int8_defaults()
        if what == "methods" and getattr(module, "CALIBRATION_METHODS", ()):
            others = [m for m in module.CALIBRATION_METHODS if m != method]
            parts.append(f"{t.name} {' | '.join([method, *others])}")
        elif what == "parts":
            known = [*module.FLOAT_PARTS, *(["auto"] if "auto" in float_parts else [])]
            parts.append(f"{t.name} {','.join(float_parts) or 'none'} (of {', '.join(known)})")
    return "; ".join(parts)
