"""``infer`` on image files: the JSON contract (one entry per image read) and the drawn images, each published
whole (atomic writes). An image that cannot be read is reported and skipped; a model whose output is not finite
ends the run, naming the image (the model is broken, not the picture)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ImageError, ModelOutputError
from .files import atomic_path, write_text_atomic
from .images import draw_detections, json_path, read_image


@dataclass
class ImageRun:
    entries: list = field(default_factory=list)   # the JSON contract: image, width, height, detections
    failed: int = 0                               # images that could not be read (each reported by on_error)
    seconds: float = 0.0


def detect_images(detector, paths, json_out: Path | None = None, save_vis: Path | None = None, advance=None,
                  on_error=None) -> ImageRun:
    """Every image of ``paths`` through ``detector``; the entries written to ``json_out`` as one JSON list, the
    drawn images to ``save_vis/STEM.jpg``. ``on_error(ImageError)`` is told of each unreadable image."""
    import cv2

    run, started = ImageRun(), time.perf_counter()
    for path in paths:
        if advance:
            advance()
        try:
            image = read_image(path)
        except ImageError as e:
            run.failed += 1
            if on_error:
                on_error(e)
            continue
        try:
            detections = detector(image)
        except ModelOutputError as e:
            raise ModelOutputError(f"{path}: {e}") from None
        run.entries.append({"image": json_path(path), "width": image.shape[1], "height": image.shape[0],
                            "detections": detections.to_list(detector.class_names)})
        if save_vis:
            with atomic_path(Path(save_vis) / f"{Path(path).stem}.jpg") as tmp:
                ok, encoded = cv2.imencode(".jpg", draw_detections(image, detections, detector.class_names))
                tmp.write_bytes(encoded.tobytes())
    run.seconds = time.perf_counter() - started
    if json_out:
        write_text_atomic(json_out, json.dumps(run.entries))
    return run
