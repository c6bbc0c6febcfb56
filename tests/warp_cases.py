"""The images and network inputs on which our warp is held to OpenCV 5.0.0.93's (tests/test_processing.py), shared
with the script that saved OpenCV's output (tests/fixtures/make_opencv_warp_hashes.py), so both walk the same list.

Real photos (val-dev, the 600 fidelity images) at the presets' inputs, stretched and letterboxed, and synthetic
images of awkward shapes (1x1, 2x500, 999x13, 37x1000, 333x200) whose pixels come from an integer hash (the
same bytes on every machine and numpy version), at odd and tiny inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

OPENCV_VERSION = "5.0.0.93"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "opencv-5.0.0.93-warp.json"

# (width, height, keep_ratio): the 416 and 320 presets, letterboxed, and odd and tiny non-square inputs
PHOTO_INPUTS = [(416, 416, False), (320, 320, False), (416, 416, True)]
VAL_DEV_INPUTS = PHOTO_INPUTS + [(320, 192, True), (330, 250, False)]
SYNTHETIC_SHAPES = [(1, 1), (2, 500), (999, 13), (37, 1000), (333, 200), (480, 640)]  # (height, width)
SYNTHETIC_INPUTS = VAL_DEV_INPUTS + [(17, 33, True), (17, 33, False)]


def synthetic_image(height: int, width: int) -> np.ndarray:
    """Pseudo-random BGR8 pixels from a multiplicative hash of (y, x, channel): no RNG stream to drift."""
    y, x, c = np.meshgrid(np.arange(height, dtype=np.uint64), np.arange(width, dtype=np.uint64),
                          np.arange(3, dtype=np.uint64), indexing="ij")
    key = (y * np.uint64(7919) + x * np.uint64(104729) + c * np.uint64(31337)) * np.uint64(2654435761)
    return ((key >> np.uint64(13)) & np.uint64(255)).astype(np.uint8)


def digest(array: np.ndarray) -> str:
    """First 16 hex digits of the SHA-256 of the array's bytes with its shape."""
    return hashlib.sha256(repr(array.shape).encode() + np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def case_name(width: int, height: int, keep_ratio: bool) -> str:
    return f"{width}x{height} {'letterbox' if keep_ratio else 'stretch'}"


def cases(shared: Path):
    """(image key, image path or None, synthetic shape or None, [(width, height, keep_ratio), ...])."""
    for path in sorted((shared / "coco" / "val-dev" / "images").iterdir()):
        yield f"val-dev/{path.name}", path, None, VAL_DEV_INPUTS
    for path in sorted((shared / "coco" / "fidelity" / "images").iterdir()):
        yield f"fidelity/{path.name}", path, None, PHOTO_INPUTS
    for shape in SYNTHETIC_SHAPES:
        yield f"synthetic/{shape[0]}x{shape[1]}", None, shape, SYNTHETIC_INPUTS
