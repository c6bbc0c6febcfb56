"""`nanodet-deploy infer` / `eval` reproduce the official NanoDet implementation on the 79 real val-dev images."""

import json

import cv2
import pytest

from nanodet_deploy import Detector
from nanodet_deploy.parity import box_iou

from .helpers import OFFICIAL, VAL_ANN, VAL_IMAGES, assert_reproduces_official, report, run_cli, weights

MAP_TOLERANCE = 0.002


@pytest.mark.parametrize("size", [416, 320])
def test_infer_reproduces_official_detections(size, tmp_path, request):
    """The whole lists, to the 100th box, are the official ones under ``parity.same_detections`` with the
    foundation issue's tolerance (same label, IoU >= 0.99, |Δscore| <= 1e-3; boxes at the 0.05 threshold or the
    100th score may be on one side only). Measured with the warp that is ours (OpenCV 5.0's; 5.0 and 5.1
    installed): 79/79 images, 7,620 (416) and 7,614 (320) pairs, worst |Δscore| 2.1e-6 / 7.2e-7, worst IoU
    0.999988 / 0.99999, no box left undecided. Through OpenCV 5.1's own warp (19,211 input values one grey level
    off at 416) the same model gives the official lists on 59/79 images only (76/79 for the boxes >= 0.3), worst
    |Δscore| 9.7e-4: the pixels matter, tolerances cannot absorb them."""
    out = tmp_path / "detections.json"
    result = run_cli("infer", VAL_IMAGES, "--checkpoint", weights(size), "--json", out, "--threads", "2")
    assert result.returncode == 0, result.stderr
    ours = {entry["image"].rsplit("/", 1)[-1]: entry for entry in json.loads(out.read_text())}
    official = json.loads((OFFICIAL / f"val-dev_m_{size}.json").read_text())
    assert len(ours) == len(official) == 79
    for ref in official:
        entry = ours[ref["image"]]
        assert (entry["width"], entry["height"]) == (ref["width"], ref["height"])
        assert set(entry) == {"image", "width", "height", "detections"}
        assert all(set(d) == {"label", "name", "score", "box"} for d in entry["detections"])
    figures = assert_reproduces_official({name: entry["detections"] for name, entry in ours.items()}, size,
                                         min_score=None)
    report(request, f"{size}: official detections reproduced, {figures['pairs']} pairs, max |Δscore| "
           f"{figures['max_score_diff']:.1e}, min IoU {figures['min_iou']:.6f}")
    assert figures["pairs"] > 7000  # the criterion really covered the set


@pytest.mark.parametrize("size", [416, 320])
def test_eval_gives_the_official_map(size, tmp_path):
    summary = json.loads((OFFICIAL / "summary.json").read_text())
    expected = next(e["map"] for e in summary["entries"] if e["size"] == size)
    out = tmp_path / "metrics.json"
    result = run_cli("eval", "--images", VAL_IMAGES, "--ann", VAL_ANN, "--checkpoint", weights(size),
                     "--json", out, "--threads", "2")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert abs(metrics["map"] - expected) <= MAP_TOLERANCE, (metrics["map"], expected)
    assert metrics["num_images"] == 79


def test_non_square_input_keeps_width_and_height_apart():
    """416x320 (W x H): the confident detections at 416x416 are found again — a W/H swap would scatter them."""
    square = Detector(checkpoint=weights(416))
    wide = Detector(checkpoint=weights(416), input_size=(416, 320))
    assert wide.raw(__import__("numpy").zeros((1, 3, 320, 416), "float32")).shape[1] == \
        52 * 40 + 26 * 20 + 13 * 10 + 7 * 5
    found = total = 0
    for name in ("000000000139.jpg", "000000000802.jpg", "000000011813.jpg"):
        image = cv2.imread(str(VAL_IMAGES / name))
        a, b = square(image), wide(image)
        for box, score, label in zip(a.boxes, a.scores, a.labels):
            if score < 0.5:
                continue
            total += 1
            same = b.labels == label
            found += bool(same.any() and box_iou(box, b.boxes[same]).max() >= 0.7)
    assert total >= 3 and found / total >= 0.8, (found, total)
