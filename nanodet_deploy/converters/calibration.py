"""Calibration data for every INT8 path: images fed through the SAME preprocessing as inference."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from .. import quantization
from ..errors import UsageError
from ..images import IMAGE_SUFFIXES, read_image
from ..processing import ProcessingConfig, preprocess

DEFAULT_CALIB_IMAGES = 100


def calibration_images(directory: str | Path, limit: int = DEFAULT_CALIB_IMAGES) -> list[Path]:
    """Up to ``limit`` images of ``directory``, spread evenly over its sorted listing (deterministic)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: calibration folder does not exist")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UsageError(f"{directory}: no calibration images (jpg/png/...) in it")
    if limit and len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return paths


def check_keep_float(keep_float, known, auto: bool = False) -> None:
    """Every INT8 converter's ``--keep-float`` parts must be ones it knows; ``auto`` (sensitivity-driven, where
    the converter has it) stands alone."""
    known = [*known, *(["auto"] if auto else [])]
    unknown = set(keep_float) - set(known)
    if unknown:
        raise UsageError(f"unknown --keep-float parts {sorted(unknown)} (known: {', '.join(known)})")
    if "auto" in keep_float and len(keep_float) > 1:
        raise UsageError("--keep-float auto chooses the float layers itself: give it alone")


def calibration_tensors(paths: list[Path], processing: ProcessingConfig, progress=None) -> Iterator[np.ndarray]:
    """[1, 3, H, W] float32 input tensors, one per image, exactly as the Detector would feed them."""
    for path in paths:
        tensor, _ = preprocess(read_image(path), processing)
        if progress:
            progress()
        yield tensor


def read_calibration(paths: list[Path], processing: ProcessingConfig, progress=None) -> list[np.ndarray]:
    """Every calibration image as its input tensor, with a progress bar (``progress(description, total)``)."""
    advance = progress("reading calibration images", len(paths)) if progress else None
    return list(calibration_tensors(paths, processing, advance))


def shared_recipe(onnx_model, paths: list[Path], processing: ProcessingConfig, placement, method: str, keep_float,
                  progress=None, always_float=(), tensors=None) -> tuple:
    """The one INT8 recipe (``quantization.calibrate``) for the FP32 ``onnx_model`` on the calibration images
    ``paths`` (``tensors``: those images already read, for a writer that calibrates with them too), with the
    format's ``placement`` and the parts it can never quantize (``always_float``). Returns (equalized model,
    recipe, the conversion record: the recipe's summary and how many images it saw) for the format's writer."""
    if tensors is None:
        tensors = read_calibration(paths, processing, progress)
    equalized, recipe = quantization.calibrate(onnx_model, tensors, processing.num_classes, placement,
                                               quantization.float_choice(keep_float), method, progress,
                                               always_float=always_float)
    return equalized, recipe, {**recipe.summary(), "calibration_images": len(tensors)}


def float_layers_summary(conversion: dict) -> str:
    """", kept in float: ..., N layers INT8 (method)" for converters that record their float layers."""
    if "float_layers" not in conversion:
        return ""
    chosen = " by sensitivity" if conversion.get("float_selection") == "sensitivity" else ""
    return (f", kept in float{chosen}: {', '.join(conversion['float_layers']) or 'nothing'}, "
            f"{conversion['int8_layers']} layers INT8 ({conversion['calibration_method']})")
