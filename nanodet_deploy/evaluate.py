"""COCO bbox mAP with pycocotools, the way NanoDet's CocoDetectionEvaluator computes it."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

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


def pseudo_annotations(reference: list[Detections], min_score: float) -> list[dict]:
    """COCO annotations (image id = index in ``reference``, category id = class index) of the ``reference``
    detections >= min_score: ground truth for a label-free mAP."""
    annotations = []
    for image_id, dets in enumerate(reference):
        for (x1, y1, x2, y2), score, label in zip(dets.boxes, dets.scores, dets.labels):
            if score >= min_score:
                w, h = float(x2 - x1), float(y2 - y1)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                    "bbox": [float(x1), float(y1), w, h], "area": w * h, "iscrowd": 0})
    return annotations


def map_against_detections(reference: list[Detections], candidate: list[Detections], num_classes: int,
                           min_score: float) -> float:
    """mAP of ``candidate`` taking ``reference`` detections >= min_score as ground truth (no annotations)."""
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(len(reference))],
                  "annotations": pseudo_annotations(reference, min_score),
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


# ---------------------------------------------------------------- paired bootstrap over images

BOOTSTRAP_SAMPLES = 300  # the interval's ends move by < 0.1 point between seeds at 300 (val-dev, 79 images)
INTERVAL = 0.90
_CHUNK_ELEMENTS = 2_000_000  # bootstrap samples are scored in chunks of about this many array elements


@dataclass
class ClassMatches:
    """One category's detections over the set, sorted by score as COCOeval.accumulate sorts them."""

    image: np.ndarray      # [D] index of each detection's image
    matched: np.ndarray    # [T, D] matched a ground truth at IoU threshold t
    ignored: np.ndarray    # [T, D] matched an ignored (crowd / out-of-area) ground truth
    objects: np.ndarray    # [I] non-ignored ground truths per image


def class_matches(coco_set: CocoSet, detections: list[Detections]) -> list[ClassMatches]:
    """COCOeval.evaluate's per-image matching (area "all", 100 detections), kept per category, so that any
    multiset of images can be scored without matching again: a resample's mAP is COCOeval.accumulate over
    those images, computed here with each image weighted by how often it was drawn."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = [i for i, _ in coco_set.images]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_set.ann_file))
        results = _results(zip(ids, detections), coco_set.category_ids)
        evaluator = COCOeval(gt, gt.loadRes(results) if results else COCO(), "bbox")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
    params = evaluator.params
    images, areas, thresholds = len(params.imgIds), len(params.areaRng), len(params.iouThrs)
    out = []
    for k in range(len(params.catIds)):
        entries = evaluator.evalImgs[k * areas * images: k * areas * images + images]  # area "all"
        image, scores, matched, ignored = [], [], [], []
        objects = np.zeros(images)
        for i, entry in enumerate(entries):
            if entry is None:
                continue
            count = len(entry["dtScores"][:params.maxDets[-1]])
            image += [i] * count
            scores += entry["dtScores"][:count]
            matched.append(np.asarray(entry["dtMatches"])[:, :count] > 0)
            ignored.append(np.asarray(entry["dtIgnore"])[:, :count].astype(bool))
            objects[i] = np.count_nonzero(np.asarray(entry["gtIgnore"]) == 0)
        order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
        empty = np.zeros((thresholds, 0), bool)
        out.append(ClassMatches(np.asarray(image, np.int64)[order],
                                (np.concatenate(matched, axis=1) if matched else empty)[:, order],
                                (np.concatenate(ignored, axis=1) if ignored else empty)[:, order], objects))
    return out


def resampled_map(matches: list[ClassMatches], counts: np.ndarray) -> np.ndarray:
    """mAP@[.5:.95] for each row of ``counts`` ([B, I]: how often each image is drawn), as COCOeval.accumulate
    and summarize compute it (101 recall points, interpolated precision, classes without objects left out).
    With every count 1 it gives COCOeval's mAP to 1e-7 (0.37028523 against 0.37028518 on val-dev)."""
    recall_points = np.linspace(0.0, 1.0, 101)
    total, present = np.zeros(len(counts)), np.zeros(len(counts))
    for cls in matches:
        objects = counts @ cls.objects
        valid = objects > 0
        thresholds, detections = cls.matched.shape
        ap = np.zeros(len(counts))
        if detections:
            step = max(1, _CHUNK_ELEMENTS // (thresholds * detections))
            tp = (cls.matched & ~cls.ignored).astype(np.float64)
            fp = (~cls.matched & ~cls.ignored).astype(np.float64)
            for start in range(0, len(counts), step):
                weight = counts[start:start + step][:, cls.image][:, None, :]           # [b, 1, D]
                tps, fps = np.cumsum(weight * tp, axis=2), np.cumsum(weight * fp, axis=2)
                recall = tps / np.maximum(objects[start:start + step], 1)[:, None, None]
                precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
                precision = np.maximum.accumulate(precision[..., ::-1], axis=2)[..., ::-1]
                # COCOeval's searchsorted(recall, points, "left") for every (sample, threshold) row at once: rows
                # are non-decreasing in [0, 1], so offsetting row r by 2r makes the flattened array sorted
                rows = recall.shape[0] * recall.shape[1]
                offset = 2.0 * np.arange(rows)[:, None]
                found = np.searchsorted((recall.reshape(rows, -1) + offset).ravel(),
                                        (recall_points[None, :] + offset).ravel(), side="left").reshape(rows, -1)
                index = found - detections * np.arange(rows)[:, None]                      # [b*T, 101]
                padded = np.concatenate([precision.reshape(rows, -1), np.zeros((rows, 1))], axis=1)
                ap[start:start + step] = np.take_along_axis(padded, index, axis=1).reshape(
                    recall.shape[0], -1).mean(axis=1)
        total += np.where(valid, ap, 0.0)
        present += valid
    return total / np.maximum(present, 1)


def bootstrap_counts(images: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> np.ndarray:
    """[samples, images]: how often each image is drawn in each resample (with replacement, seeded)."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, images, images), minlength=images)
                     for _ in range(samples)]).astype(np.float64)


def interval_of(values: np.ndarray, interval: float = INTERVAL) -> list[float]:
    tail = (1 - interval) / 2
    return [float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))]


def paired_bootstrap(coco_set: CocoSet, reference: list[Detections], candidate: list[Detections],
                     counts: np.ndarray) -> list[float]:
    """The INTERVAL (90%) paired bootstrap interval of the mAP drop (reference - candidate): each resample of
    the images (``counts``) scores both sides on the same images."""
    ref, cand = class_matches(coco_set, reference), class_matches(coco_set, candidate)
    return interval_of(resampled_map(ref, counts) - resampled_map(cand, counts))
