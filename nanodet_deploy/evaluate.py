"""COCO bbox mAP with pycocotools, the way NanoDet's CocoDetectionEvaluator computes it."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import UsageError
from .processing import Detections

# COCOeval.stats order
METRIC_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large")


@dataclass
class CocoSet:
    """An annotation file and its image folder: (image id, path) pairs and class index -> category id."""

    ann_file: Path
    images: list[tuple[int, Path]]
    category_ids: list[int]  # class index i <-> i-th category id ascending (NanoDet's CocoDataset.cat_ids)

    @classmethod
    def load(cls, images_dir: str | Path, ann_file: str | Path) -> "CocoSet":
        ann_file, images_dir = Path(ann_file), Path(images_dir)
        try:
            data = json.loads(ann_file.read_text())
            entries = [(int(im["id"]), images_dir / im["file_name"]) for im in data["images"]]
            category_ids = sorted(int(c["id"]) for c in data["categories"])
        except OSError as e:
            raise UsageError(f"{ann_file}: cannot read ({e.strerror})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{ann_file}: not a COCO instances file ({type(e).__name__}: {e})") from None
        missing = [str(p) for _, p in entries if not p.is_file()]
        if missing:
            raise UsageError(f"{images_dir}: {len(missing)} images of {ann_file.name} are missing "
                             f"(first: {missing[0]})")
        return cls(ann_file, entries, category_ids)


def _results(detections, category_ids) -> list[dict]:
    return [{"image_id": image_id, "category_id": category_ids[int(label)],
             "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)}
            for image_id, dets in detections
            for (x1, y1, x2, y2), score, label in zip(dets.boxes, dets.scores, dets.labels)]


def _cocoeval(gt, results: list[dict], image_ids, per_class: bool = False) -> dict:
    from pycocotools.cocoeval import COCOeval

    image_ids, evaluator = list(image_ids), None
    metrics = {name: 0.0 for name in METRIC_NAMES}
    if results:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
            evaluator.params.imgIds = image_ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics = {name: float(v) for name, v in zip(METRIC_NAMES, evaluator.stats)}
    return {**metrics, "per_class": _class_ap(gt, evaluator, image_ids)} if per_class else metrics


def _class_ap(gt, evaluator, image_ids) -> dict[int, dict]:
    """Category id -> {name, instances, ap} for every category with annotated (non-crowd) objects in the
    images. mAP@[.5:.95] is the mean of these APs, so a class with one object weighs as much as one with
    hundreds: on a small set, one object's detection moving a rank can move mAP by most of a point."""
    out = {}
    for k, category in enumerate(sorted(gt.getCatIds())):
        instances = len(gt.getAnnIds(imgIds=image_ids, catIds=[category], iscrowd=False))
        if not instances:
            continue
        ap = 0.0  # no detections at all
        if evaluator is not None:
            precision = evaluator.eval["precision"][:, :, k, 0, -1]  # IoU x recall, all areas, 100 detections
            ap = float(precision[precision > -1].mean()) if (precision > -1).any() else 0.0
        out[category] = {"name": gt.loadCats(category)[0].get("name", str(category)), "instances": instances,
                         "ap": ap}
    return out


def coco_map(coco_set: CocoSet, detections: Iterable[tuple[int, Detections]], num_classes: int,
             per_class: bool = False) -> dict:
    """mAP@[.5:.95], mAP50, mAP75 and by size, over every image of the set; with ``per_class``, also
    ``per_class``: category id -> {name, instances, ap}."""
    from pycocotools.coco import COCO

    if len(coco_set.category_ids) != num_classes:
        raise UsageError(f"{coco_set.ann_file}: {len(coco_set.category_ids)} categories, the model has "
                         f"{num_classes} classes")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_set.ann_file))
    return _cocoeval(gt, _results(detections, coco_set.category_ids), [i for i, _ in coco_set.images], per_class)


def map_against_detections(reference: list[Detections], candidate: list[Detections], num_classes: int,
                           min_score: float) -> float:
    """mAP of ``candidate`` taking ``reference`` detections >= min_score as ground truth (no annotations)."""
    from pycocotools.coco import COCO

    annotations = []
    for image_id, dets in enumerate(reference):
        for (x1, y1, x2, y2), score, label in zip(dets.boxes, dets.scores, dets.labels):
            if score >= min_score:
                w, h = float(x2 - x1), float(y2 - y1)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                    "bbox": [float(x1), float(y1), w, h], "area": w * h, "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(len(reference))], "annotations": annotations,
                  "categories": [{"id": c} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return _cocoeval(gt, _results(enumerate(candidate), list(range(num_classes))), range(len(reference)))["map"]


def evaluate(detect: Callable, coco_set: CocoSet, num_classes: int, progress=None) -> dict:
    """Run ``detect(image_bgr) -> Detections`` over the set and score it."""
    from .images import read_image

    results = []
    for image_id, path in coco_set.images:
        results.append((image_id, detect(read_image(path))))
        if progress:
            progress()
    return coco_map(coco_set, results, num_classes)
