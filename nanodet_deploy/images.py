"""Finding, reading and drawing images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError, UsageError
from .processing import Detections

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def collect_images(paths) -> list[Path]:
    """Files given directly, plus the images inside given folders (sorted, not recursive)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif p.is_file():
            found.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    if not found:
        raise UsageError(f"no images found in {', '.join(map(str, paths))}")
    return found


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image as ``cv2.imread(path, IMREAD_COLOR)`` gives it (gray, alpha and 16-bit converted)."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # not cv2.imread: it cannot say why it failed
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:].tobytes():
        # a JPEG cut short: some decoders return its top part padded with grey instead of failing
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{path}: not a decodable image")
    return image


def draw_detections(image: np.ndarray, detections: Detections, class_names, min_score: float = 0.3) -> np.ndarray:
    """A copy of ``image`` with labelled boxes of the detections scoring at least ``min_score``."""
    out = image.copy()
    for box, score, label in zip(detections.boxes, detections.scores, detections.labels):
        if score < min_score:
            continue
        color = tuple(int(c) for c in np.random.default_rng(int(label)).integers(64, 255, 3))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        text = f"{class_names[label]} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(out, (x1, max(y1 - th - 4, 0)), (x1 + tw + 2, max(y1, th + 4)), color, -1)
        cv2.putText(out, text, (x1 + 1, max(y1 - 3, th + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return out
