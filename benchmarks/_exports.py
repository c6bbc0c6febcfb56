"""Shared by the benchmark scripts: the shared data, and exports made once into a work folder."""

from __future__ import annotations

from pathlib import Path

from nanodet_deploy.converters.calibration import calibration_images, calibration_tensors
from nanodet_deploy.export import export
from nanodet_deploy.manifest import read_manifest

SHARED = Path(__file__).resolve().parents[2] / "shared"
CALIB = SHARED / "coco/calib-train/images"
VAL_IMAGES = SHARED / "coco/val-dev/images"


def ensure_export(work: Path, target: str, size: int, precision: str, threads: int) -> Path:
    """``work/<target>-m<size>-<precision>``, exported from the shared weights unless already there."""
    folder = work / f"{target}-m{size}-{precision}"
    if not (folder / "nanodet.json").is_file():
        export(SHARED / f"weights/nanodet-plus-m_{size}.pth", to=target, out=folder, precision=precision,
               threads=threads, calib=CALIB if precision == "int8" else None)
    return folder


def val_tensors(folder: Path, count: int = 20):
    """Real val-dev input tensors, preprocessed for the export in ``folder``."""
    processing = read_manifest(folder).processing_config()
    return list(calibration_tensors(calibration_images(VAL_IMAGES, count), processing))
