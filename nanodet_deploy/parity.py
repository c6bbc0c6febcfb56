"""The parity gate: an artifact against the PyTorch reference on the same input tensors.

Per artifact: max-abs and cosine error of the class-score slice and of the distance logits; detection
agreement (share of PyTorch detections >= 0.3 matched by the artifact with the same label at IoU >= 0.9);
mAP against annotations when given, else against PyTorch's detections >= 0.3. Budgets per precision decide.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelOutputError
from .processing import (FLOAT_NCHW, MAX_DETS, SCORE_THR, Detections, ProcessingConfig,
                         normalise, postprocess, preprocess)

AGREEMENT_MIN_SCORE = 0.3
AGREEMENT_MIN_IOU = 0.9
SYNTHETIC_INPUTS = 8  # when no images are given: seeded noise images, tensor errors only
DIFFERING_IMAGES = 6  # images kept where the artifact's detections differ most from PyTorch's (the report's strip)


@dataclass
class Budgets:
    """Default budgets of the parity gate (overridable on the command line)."""

    fp32_score_max_abs: float = 1e-4
    fp32_agreement: float = 1.0
    fp16_agreement: float = 0.98
    int8_map_drop_points: float = 1.0  # COCO mAP points (0.3703 -> 0.3603 is a 1.0-point drop)
    # Label-free INT8 floors on real images, checked with or without annotations, so a broken calibration cannot
    # publish. Measured (benchmarks/int8_floors.py, 416, val-dev images, against PyTorch): the default INT8
    # exports of the four targets give score cos 0.980-0.991, distances cos 0.988-0.995, agreement 0.788-0.859;
    # calibrated on one 1x1 grey image, score cos 0.591-0.957, distances cos 0.877-0.982, agreement 0.118-0.627.
    # On the synthetic noise inputs the two calibrations are not told apart (ONNX Runtime 0.934 vs 0.928): the
    # floors need real images.
    int8_score_cosine: float = 0.95
    int8_distance_cosine: float = 0.95
    int8_agreement: float = 0.70
    int8_min_detections: int = 20  # PyTorch detections >= 0.3 the images must hold for the INT8 agreement floor

    def checks(self, precision: str) -> dict[str, tuple[str, float]]:
        """metric -> (comparison, budget) that applies to an artifact of ``precision``; no NaN / Inf output
        anywhere, whatever the precision."""
        int8 = {"map_drop_points": ("<=", self.int8_map_drop_points), "score_cosine": (">=", self.int8_score_cosine),
                "distance_cosine": (">=", self.int8_distance_cosine), "agreement": (">=", self.int8_agreement)}
        by_precision = {"fp32": {"score_max_abs": ("<=", self.fp32_score_max_abs),
                                 "agreement": (">=", self.fp32_agreement)},
                        "fp16": {"agreement": (">=", self.fp16_agreement)},
                        "int8": int8, "weight-int8": int8}
        return {"nonfinite_outputs": ("<=", 0), **by_precision.get(precision, {})}


@dataclass
class ParityReport:
    artifact: str
    backend: str
    precision: str            # of the artifact
    runtime_precision: str    # what actually executed
    inputs: str               # "images" or "synthetic"
    images: int
    nonfinite_outputs: int = 0   # NaN / Inf values in the artifact's or the reference's outputs
    score_max_abs: float = 0.0
    score_cosine: float = 1.0
    distance_max_abs: float = 0.0
    distance_cosine: float = 1.0
    agreement: float | None = None
    reference_detections: int | None = None
    map_against: str | None = None        # "annotations" or "pytorch"
    map_reference: float | None = None
    map_artifact: float | None = None
    map_drop_points: float | None = None  # mAP points lost: 100 x (reference - artifact)
    map_lost_by_class: list[dict] | None = None  # the classes that lost the most, against annotations
    map_drop_points_interval: list[float] | None = None  # 90% paired bootstrap interval over images, annotations
    agreement_interval: list[float] | None = None  # 90% bootstrap interval over images
    # the images where the detections >= AGREEMENT_MIN_SCORE differ most: both sides' boxes, the unmatched marked
    differing_images: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    passed: bool = True

    @property
    def budget_precision(self) -> str:
        """Which precision's budgets apply: an FP32 artifact executed in bf16 is held to the FP16 ones."""
        if self.precision == "fp32" and self.runtime_precision in ("bf16", "fp16"):
            return "fp16"
        return self.precision

    def apply(self, budgets: Budgets) -> "ParityReport":
        self.checks = []
        for metric, (op, budget) in budgets.checks(self.budget_precision).items():
            value = getattr(self, metric)
            if metric == "map_drop_points" and self.map_against != "annotations":
                value = None  # the budget is in mAP points against annotations; PyTorch-as-truth is not that
            if metric in ("score_cosine", "distance_cosine") and self.inputs == "synthetic":
                value = None  # measured on noise a broken calibration scores like a good one (int8_floors.py)
            if metric == "agreement" and self.budget_precision in ("int8", "weight-int8") \
                    and self.inputs != "synthetic" and (self.reference_detections or 0) < budgets.int8_min_detections:
                # real images on which PyTorch finds almost nothing cannot vouch for an INT8 artifact
                self.checks.append({"metric": metric, "budget": f"{op} {budget}", "value": value, "passed": False,
                                    "note": f"only {self.reference_detections or 0} PyTorch detections >= "
                                            f"{AGREEMENT_MIN_SCORE} on these images; INT8 needs "
                                            f"{budgets.int8_min_detections}"})
                continue
            if value is None:
                self.checks.append({"metric": metric, "budget": f"{op} {budget}", "value": None,
                                    "passed": None, "note": "needs --images (and --ann for annotations)"})
                continue
            ok = value <= budget if op == "<=" else value >= budget
            check = {"metric": metric, "budget": f"{op} {budget}", "value": value, "passed": ok}
            if metric == "nonfinite_outputs" and not ok:
                check["note"] = "the model produced NaN/Inf"
            if metric == "map_drop_points" and self.map_drop_points_interval:
                low, high = self.map_drop_points_interval
                check["interval"] = [low, high]
                if high - low > budget:
                    # the verdict stays the measured drop against the budget; this says how little it rests on
                    check["note"] = (f"{self.images} images cannot decide a {budget:.1f}-point budget: the 90% "
                                     f"interval of the drop is [{low:.2f}, {high:.2f}] points")
            self.checks.append(check)
        self.passed = all(c["passed"] is not False for c in self.checks)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class _Cosine:
    def __init__(self):
        self.dot = self.aa = self.bb = 0.0

    def add(self, a: np.ndarray, b: np.ndarray):
        # einsum's own loop, not BLAS: a dot product this long wakes OpenBLAS's threads, which then spin and
        # starve the next PyTorch forward. Measured in the gate at 416 on 2 cores: 103 ms per PyTorch image with
        # `a @ b`, 39 ms with this (the same forward run alone: 38 ms).
        a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        self.dot += np.einsum("i,i->", a, b)
        self.aa += np.einsum("i,i->", a, a)
        self.bb += np.einsum("i,i->", b, b)

    @property
    def value(self) -> float:
        """NaN when either side held NaN/Inf: every budget comparison with it fails."""
        return float(self.dot / max(np.sqrt(self.aa * self.bb), 1e-30))


def _max_abs(difference: np.ndarray) -> float:
    """max |difference|, infinite when any value is NaN or Inf (Python's max() would drop a NaN)."""
    value = float(np.abs(difference).max()) if difference.size else 0.0
    return value if np.isfinite(value) else float("inf")


def synthetic_images(count: int = SYNTHETIC_INPUTS, size=(480, 640)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def compare(reference, artifact, processing: ProcessingConfig, images, coco_set=None, progress=None,
            detections: bool = True) -> ParityReport:
    """Run ``images`` (BGR arrays, or paths) through both runtimes; tensor errors, and unless ``detections``
    is False (synthetic inputs, where boxes mean nothing) agreement and mAP."""
    from .images import read_image

    comparison = Comparison(processing, backend=artifact.backend, precision=artifact.precision)
    for image in images:
        source = None if isinstance(image, np.ndarray) else str(image)
        image = read_image(image) if not isinstance(image, np.ndarray) else image
        # an export that normalises in its graph gets the 8-bit image (its own input path is what is measured);
        # the reference, that image normalised: one warp for both
        art_input, matrix = preprocess(image, processing, artifact.input_format)
        tensor = art_input if artifact.input_format == FLOAT_NCHW else normalise(art_input[0], processing)
        comparison.add(reference.run(tensor)[0], artifact.run(art_input)[0], matrix,
                       (image.shape[1], image.shape[0]), source)
        if progress:
            progress()
    return comparison.report(coco_set, detections)


class Comparison:
    """The gate's figures for one artifact against a reference, image by image: ``add`` both raw outputs of an
    image, ``report`` at the end. Used by ``compare`` (two runtimes) and by the emulated phone (phone.py), whose
    outputs come from another process."""

    def __init__(self, processing: ProcessingConfig, backend: str, precision: str):
        self.processing, self.backend, self.precision = processing, backend, precision
        self.score_cos, self.dist_cos = _Cosine(), _Cosine()
        self.score_err = self.dist_err = 0.0
        self.nonfinite = 0
        self.ref_dets, self.art_dets, self.sources, self.image_errors = [], [], [], []

    def add(self, ref_raw: np.ndarray, art_raw: np.ndarray, matrix: np.ndarray, image_size: tuple[int, int],
            source: str | None = None, art_dets: Detections | None = None) -> None:
        """One image's raw outputs [num_points, channels]; ``art_dets``: the artifact's detections when its own
        code decoded them (default: ``postprocess`` of ``art_raw``)."""
        c = self.processing.num_classes
        self.sources.append(source)
        self.nonfinite += int((~np.isfinite(ref_raw)).sum() + (~np.isfinite(art_raw)).sum())
        self.image_errors.append(_max_abs(ref_raw[:, :c] - art_raw[:, :c]))
        self.score_err = max(self.score_err, self.image_errors[-1])
        self.dist_err = max(self.dist_err, _max_abs(ref_raw[:, c:] - art_raw[:, c:]))
        self.score_cos.add(ref_raw[:, :c], art_raw[:, :c])
        self.dist_cos.add(ref_raw[:, c:], art_raw[:, c:])
        self.ref_dets.append(self._detections(ref_raw, matrix, image_size))
        self.art_dets.append(art_dets if art_dets is not None else self._detections(art_raw, matrix, image_size))

    def _detections(self, raw: np.ndarray, matrix: np.ndarray, image_size: tuple[int, int]) -> Detections:
        """``postprocess``; none for an output with NaN / Inf, which ``nonfinite_outputs`` counts and fails."""
        try:
            return postprocess(raw, matrix, image_size, self.processing)
        except ModelOutputError:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                              image_size=tuple(image_size))

    def report(self, coco_set=None, detections: bool = True) -> ParityReport:
        from .evaluate import bootstrap_counts, coco_map, map_against_detections, paired_bootstrap

        c = self.processing.num_classes
        ref_dets, art_dets = self.ref_dets, self.art_dets
        report = ParityReport(artifact="", backend=self.backend, precision=self.precision,
                              runtime_precision=self.precision, inputs="images", images=len(ref_dets),
                              nonfinite_outputs=self.nonfinite, score_max_abs=self.score_err,
                              score_cosine=self.score_cos.value, distance_max_abs=self.dist_err,
                              distance_cosine=self.dist_cos.value)
        if not detections:
            return report
        report.differing_images = differing_images(ref_dets, art_dets, self.sources, self.image_errors)
        counts = bootstrap_counts(len(ref_dets))
        report.agreement, report.agreement_interval, report.reference_detections = agreement_with_interval(
            ref_dets, art_dets, counts)
        if coco_set is not None:
            ids = [image_id for image_id, _ in coco_set.images]
            report.map_against = "annotations"
            reference_map = coco_map(coco_set, zip(ids, ref_dets), c, per_class=True)
            artifact_map = coco_map(coco_set, zip(ids, art_dets), c, per_class=True)
            report.map_reference, report.map_artifact = reference_map["map"], artifact_map["map"]
            report.map_lost_by_class = class_losses(reference_map["per_class"], artifact_map["per_class"])
            report.map_drop_points_interval = [100 * x for x in paired_bootstrap(coco_set, ref_dets, art_dets, counts)]
        elif report.reference_detections:
            report.map_against = "pytorch"
            report.map_reference, report.map_artifact = 1.0, map_against_detections(ref_dets, art_dets, c,
                                                                                     AGREEMENT_MIN_SCORE)
        if report.map_reference is not None:
            report.map_drop_points = 100 * (report.map_reference - report.map_artifact)
        return report


def differing_images(reference: list[Detections], artifact: list[Detections], sources: list[str | None],
                     score_errors: list[float], count: int = DIFFERING_IMAGES) -> list[dict]:
    """The ``count`` images whose detections >= AGREEMENT_MIN_SCORE differ most between PyTorch and the
    artifact (boxes of one side that the other lacks at the same label and IoU >= AGREEMENT_MIN_IOU; ties: the
    larger score error), with both sides' boxes and which are unmatched. Images without any difference are
    left out."""
    def side(dets: Detections, other: Detections) -> list[dict]:
        keep = dets.scores >= AGREEMENT_MIN_SCORE
        other_keep = other.scores >= AGREEMENT_MIN_SCORE
        missing = unmatched_mask(dets.boxes[keep], dets.scores[keep], dets.labels[keep], other.boxes[other_keep],
                                 other.scores[other_keep], other.labels[other_keep], AGREEMENT_MIN_IOU)
        return [{"label": int(label), "score": round(float(score), 4), "box": [round(float(v), 1) for v in box],
                 "matched": not bool(m)}
                for box, score, label, m in zip(dets.boxes[keep], dets.scores[keep], dets.labels[keep], missing)]

    found = []
    for index, (ref, art) in enumerate(zip(reference, artifact)):
        ref_side, art_side = side(ref, art), side(art, ref)
        differences = sum(not d["matched"] for d in ref_side + art_side)
        if differences:
            found.append({"index": index, "image": sources[index], "width": ref.image_size[0],
                          "height": ref.image_size[1], "differences": differences,
                          "score_max_abs": score_errors[index], "reference": ref_side, "artifact": art_side})
    found.sort(key=lambda d: (-d["differences"], -d["score_max_abs"], d["index"]))
    return found[:count]


def class_losses(reference: dict[int, dict], artifact: dict[int, dict], top: int = 5) -> list[dict]:
    """The ``top`` classes whose AP fell most, each with its object count and the mAP points it lost (its AP
    loss / number of classes present; over all classes these shares sum to the mAP points lost)."""
    present = len(reference)
    losses = [{"class": r["name"], "category_id": category, "instances": r["instances"],
               "ap_reference": r["ap"], "ap_artifact": artifact[category]["ap"],
               "points_lost": 100 * (r["ap"] - artifact[category]["ap"]) / present}
              for category, r in reference.items()]
    return sorted((x for x in losses if x["points_lost"] > 0), key=lambda x: -x["points_lost"])[:top]


def agreement_counts(reference: Detections, candidate: Detections, min_score: float = AGREEMENT_MIN_SCORE,
                     min_iou: float = AGREEMENT_MIN_IOU) -> tuple[int, int]:
    """(matched, total): reference detections >= min_score with a same-label candidate at IoU >= min_iou."""
    keep = reference.scores >= min_score
    missing = unmatched_mask(reference.boxes[keep], reference.scores[keep], reference.labels[keep],
                             candidate.boxes, candidate.scores, candidate.labels, min_iou)
    return int((~missing).sum()), int(keep.sum())


def agreement_with_interval(reference: list[Detections], candidate: list[Detections], counts: np.ndarray,
                            min_iou: float = AGREEMENT_MIN_IOU) -> tuple[float | None, list[float] | None, int]:
    """(agreement, its bootstrap interval over images drawn by ``counts`` (evaluate.bootstrap_counts), reference
    detections) of per-image ``candidate`` against ``reference``; agreement and interval None without any."""
    from .evaluate import interval_of

    per_image = np.array([agreement_counts(ref, art, min_iou=min_iou) for ref, art in zip(reference, candidate)],
                         np.float64).reshape(-1, 2)
    matched, total = per_image.sum(axis=0)
    if not total:
        return None, None, 0
    drawn = counts @ per_image
    return float(matched / total), interval_of(drawn[:, 0] / np.maximum(drawn[:, 1], 1)), int(total)


def unmatched_mask(ref_boxes, ref_scores, ref_labels, boxes, scores, labels, min_iou: float,
                   max_score_diff: float = float("inf")) -> np.ndarray:
    """For each reference detection: True when no candidate has its label, IoU >= min_iou and
    |score difference| <= max_score_diff."""
    if len(ref_boxes) == 0:
        return np.zeros(0, bool)
    if len(boxes) == 0:
        return np.ones(len(ref_boxes), bool)
    ok = ((np.asarray(ref_labels)[:, None] == np.asarray(labels)[None, :])
          & (box_iou(ref_boxes, boxes) >= min_iou)
          & (np.abs(np.asarray(ref_scores, np.float64)[:, None] - np.asarray(scores, np.float64)) <= max_score_diff))
    return ~ok.any(axis=1)


# ---------------------------------------------------------------- "the same detections"

@dataclass(frozen=True)
class Tolerance:
    """How far two implementations of one model may differ and still give the same detections: a pair matches
    with the same label, |score difference| <= ``score`` and IoU >= ``iou``."""

    score: float
    iou: float


# Measured, 79 val-dev images at 416, full detection lists (score > 0.05, 100 kept), worst pair over all images:
# - the same arithmetic in C++ and numpy on the same raw output: scores equal to the bit, boxes within one float32
#   step (1.2e-4 px, IoU >= 0.999997);
SAME_CODE = Tolerance(score=1e-6, iou=0.9999)
# - one model through two builds of one library on one machine (the app's ncnn built from its source vs the ncnn
#   wheel, the same input bytes): FP32 and FP16 |Δscore| <= 9.3e-7, IoU >= 0.999988; INT8 2.9e-8, 0.999996;
#   79/79 images, no box left at a cut. ~100x the measurement:
SAME_LIBRARY = Tolerance(score=1e-4, iou=0.999)
# - the same model through another implementation or runtime in FP32 (PyTorch vs the official implementation, whole
#   lists: |Δscore| <= 2.1e-6, IoU >= 0.999988; ONNX Runtime / OpenVINO / MNN / ncnn FP32 vs PyTorch: score
#   max-abs <= 1e-4, the parity gate's FP32 budget): the tolerance of the foundation issue, which every FP32 export
#   meets against the official detections;
SAME_MODEL = Tolerance(score=1e-3, iou=0.99)


@dataclass
class Sameness:
    """``same_detections``'s verdict on one image, with its figures."""

    same: bool
    pairs: int                 # detections matched one to one
    undecided: int             # detections near a cut that only one side kept (allowed)
    differing: list[dict]      # decided detections without a partner: {"side": "a"|"b", "score", "label", "box"}
    max_score_diff: float      # over the pairs
    min_iou: float
    same_order: bool           # the two label lists identical, in the same order


def same_detections(a: Detections, b: Detections, tolerance: Tolerance, score_thr: float = SCORE_THR,
                    max_dets: int = MAX_DETS, min_score: float | None = None) -> Sameness:
    """Whether two detection lists of one image (best first, as ``postprocess`` gives them) are the same.

    Two correct implementations differ in the last bits (another OpenCV, another build of a library, another
    CPU's kernels), and a last-bit change moves a box whose score sits at a cut across it: the score threshold
    (score > score_thr), or the max_dets-th score when a list is full — on val-dev 71 of 79 images keep 100
    boxes, and a 1e-5 change decides which is the 100th. So: every detection scoring more than
    ``tolerance.score`` above both cuts must have a partner on the other side (same label, |Δscore| <=
    tolerance.score, IoU >= tolerance.iou, one to one, closest score first); a detection within that distance of
    a cut may be on one side only ("either side may keep it"). ``min_score``: only detections scoring at least
    this must have a partner (e.g. 0.3, the official-detections criterion). Order is reported, not required:
    near-equal scores may swap."""
    cut = score_thr
    for side in (a, b):
        if len(side) >= max_dets:
            cut = max(cut, float(np.min(side.scores)))
    decided_above = cut + tolerance.score
    if min_score is not None:
        decided_above = max(decided_above, min_score - 1e-12)  # "score > decided_above" then keeps score == min_score
    a_scores, b_scores = np.asarray(a.scores, np.float64), np.asarray(b.scores, np.float64)
    overlaps = box_iou(a.boxes, b.boxes)
    differences = np.abs(a_scores[:, None] - b_scores[None, :])
    allowed = ((np.asarray(a.labels)[:, None] == np.asarray(b.labels)[None, :]) & (differences <= tolerance.score)
               & (overlaps >= tolerance.iou))
    partner_of_a = np.full(len(a_scores), -1)
    taken = np.zeros(len(b_scores), bool)
    for i in np.argsort(-a_scores, kind="stable"):
        options = np.flatnonzero(allowed[i] & ~taken)
        if len(options):
            j = options[np.lexsort((-overlaps[i, options], differences[i, options]))[0]]
            partner_of_a[i], taken[j] = j, True
    paired = partner_of_a >= 0
    differing = [{"side": side, "score": float(score), "label": int(label), "box": [float(v) for v in box]}
                 for side, dets, scores, alone in (("a", a, a_scores, ~paired), ("b", b, b_scores, ~taken))
                 for score, label, box, lone in zip(scores, dets.labels, dets.boxes, alone)
                 if lone and score > decided_above]
    undecided = int((~paired).sum() + (~taken).sum()) - len(differing)
    rows, cols = np.flatnonzero(paired), partner_of_a[paired]
    return Sameness(same=not differing, pairs=int(paired.sum()), undecided=undecided, differing=differing,
                    max_score_diff=float(differences[rows, cols].max(initial=0.0)),
                    min_iou=float(overlaps[rows, cols].min(initial=1.0)),
                    same_order=bool(np.array_equal(np.asarray(a.labels), np.asarray(b.labels))))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU [len(a), len(b)] of x1y1x2y2 boxes, in float64.

    Two boxes without area (clamped to an image edge, x1 == x2 or y1 == y2: a model with random weights makes
    them) have no area to share: they are compared as the segments they are, the product of the overlap ratios
    of their x and y extents (an extent of zero length on both sides counts 1 where it is the same point), so two
    copies of one edge box still match and boxes on different edges do not."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b - inter
    iou = inter / np.maximum(union, 1e-12)
    flat = union <= 0
    if flat.any():
        def extent_overlap(lo, hi, overlap):
            span = np.maximum(a[:, None, hi], b[:, hi]) - np.minimum(a[:, None, lo], b[:, lo])
            return np.where(span > 0, overlap / np.maximum(span, 1e-12), 1.0)
        iou = np.where(flat, extent_overlap(0, 2, w) * extent_overlap(1, 3, h), iou)
    return iou


def write_report(path: Path, reports: list[ParityReport], budgets: Budgets, phone=()) -> None:
    """parity.json: the budgets, each artifact's report and, after ``--arch arm64``, the emulated phone's
    (phone.PhoneReport, one per CPU model x app mode)."""
    from .files import write_text_atomic

    document = {"budgets": asdict(budgets), "artifacts": [r.to_dict() for r in reports]}
    if phone:
        document["phone"] = [p.to_dict() for p in phone]
    write_text_atomic(path, json.dumps(_json_safe(document), indent=1, allow_nan=False) + "\n")


def _json_safe(value):
    """NaN / Inf (a broken artifact's errors) as the strings "nan" / "inf": valid JSON for every reader."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
