"""Comparing detections: does a candidate set reproduce a reference set?"""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU [len(a), len(b)] of x1y1x2y2 boxes, in float64."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b - inter, 1e-12)


def unmatched(reference: list[dict], candidate: list[dict], min_score: float, min_iou: float,
              max_score_diff: float = float("inf")) -> list[dict]:
    """Reference detections (JSON-contract dicts) scoring >= min_score that have no candidate with the same
    label, IoU >= min_iou and |score difference| <= max_score_diff."""
    missing = []
    cand_boxes = np.array([d["box"] for d in candidate], np.float64).reshape(-1, 4)
    cand_labels = np.array([d["label"] for d in candidate])
    cand_scores = np.array([d["score"] for d in candidate], np.float64)
    for ref in reference:
        if ref["score"] < min_score:
            continue
        ious = box_iou(np.array(ref["box"]), cand_boxes)[0] if len(candidate) else np.zeros(0)
        ok = (cand_labels == ref["label"]) & (ious >= min_iou) & (np.abs(cand_scores - ref["score"]) <= max_score_diff)
        if not ok.any():
            missing.append(ref)
    return missing
