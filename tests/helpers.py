"""Shared paths and helpers. The real data lives in ../shared (read-only, never copied into the repo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NANODET_SHARED", ROOT.parent / "shared")).resolve()
WEIGHTS = SHARED / "weights"
VAL_IMAGES = SHARED / "coco" / "val-dev" / "images"
VAL_ANN = SHARED / "coco" / "val-dev" / "instances.json"
CALIB_IMAGES = SHARED / "coco" / "calib-train" / "images"
OFFICIAL = SHARED / "reference" / "official-detections"

if not WEIGHTS.is_dir():  # CI has ../shared beside the clone
    raise pytest.UsageError(f"shared test data not found at {SHARED} (set NANODET_SHARED)")


def weights(size: int) -> Path:
    return WEIGHTS / f"nanodet-plus-m_{size}.pth"


def report(request, text: str) -> None:
    """A figure a test prints into the suite's output (passing tests' prints are otherwise captured)."""
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n[{request.node.module.__name__.rsplit('.', 1)[-1]}] {text}", flush=True)


def run_cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run the real command line (``python -m nanodet_deploy`` is the ``nanodet-deploy`` entry point);
    ``env`` adds environment variables."""
    return subprocess.run([sys.executable, "-m", "nanodet_deploy", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=900, env={**os.environ, **env} if env else None)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def export_cli(out, target: str, *args) -> subprocess.CompletedProcess:
    """``nanodet-deploy export --to TARGET --out OUT ...``."""
    return run_cli("export", "--to", target, "--out", out, *args)


def parity_of(folder) -> dict:
    """The (single) artifact report of ``folder/parity.json``."""
    import json

    return json.loads((folder / "parity.json").read_text())["artifacts"][0]


def assert_same_code_detections(reference, candidate, cfg, where="") -> None:
    """Two implementations of one arithmetic (C++ and numpy decoding) on one raw output: the same detections
    (``parity.same_detections``, SAME_CODE tolerance) in the same order, none left at a cut, and the scores equal
    to the bit (both copy the raw output's)."""
    import numpy as np

    from nanodet_deploy.parity import SAME_CODE, same_detections

    verdict = same_detections(reference, candidate, SAME_CODE, cfg.score_thr, cfg.max_dets)
    assert verdict.same and verdict.same_order and verdict.undecided == 0, (where, verdict.differing[:3])
    assert np.array_equal(np.asarray(candidate.scores, np.float32), reference.scores), where


def official_detections(size: int) -> dict[str, list[dict]]:
    """The official implementation's detections on val-dev at ``size``, by image file name."""
    import json

    entries = json.loads((OFFICIAL / f"val-dev_m_{size}.json").read_text())
    return {entry["image"]: entry["detections"] for entry in entries}


def assert_reproduces_official(ours: dict[str, list[dict]], size: int, min_score: float | None = 0.3) -> dict:
    """Detections (JSON contract, by image file name) are the official ones on every val-dev image under
    ``parity.same_detections`` with the foundation issue's tolerance (same label, IoU >= 0.99, |Δscore| <= 1e-3):
    by default every detection >= 0.3 of either side; ``min_score=None``: the whole lists, to the 100th box.
    Returns the figures (pairs, worst |Δscore| and IoU)."""
    from nanodet_deploy.parity import SAME_MODEL, same_detections
    from nanodet_deploy.processing import Detections

    official = official_detections(size)
    assert sorted(ours) == sorted(official)
    pairs, worst_score, worst_iou = 0, 0.0, 1.0
    for name, reference in official.items():
        verdict = same_detections(Detections.from_list(reference), Detections.from_list(ours[name]), SAME_MODEL,
                                  min_score=min_score)
        assert verdict.same, f"{name}: {len(verdict.differing)} detections differ: {verdict.differing[:3]}"
        pairs += verdict.pairs
        worst_score, worst_iou = max(worst_score, verdict.max_score_diff), min(worst_iou, verdict.min_iou)
    return {"pairs": pairs, "max_score_diff": worst_score, "min_iou": worst_iou}


def assert_infer_reproduces_official(export_dir, tmp_path, *options) -> subprocess.CompletedProcess:
    """``infer --export`` on val-dev gives every official 416 detection >= 0.3 (``assert_reproduces_official``).
    Returns the infer run."""
    import json

    out = tmp_path / "dets.json"
    result = run_cli("infer", VAL_IMAGES, "--export", export_dir, *options, "--json", out)
    assert result.returncode == 0, result.stderr
    assert_reproduces_official({e["image"].rsplit("/", 1)[-1]: e["detections"] for e in json.loads(out.read_text())},
                               416)
    return result


def some_val_images(folder: Path, count: int = 8) -> Path:
    """``folder`` holding the first ``count`` val-dev images: for checks that a few real images decide."""
    import shutil

    folder.mkdir()
    for path in sorted(VAL_IMAGES.glob("*.jpg"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def copy_export(source: Path, folder: Path) -> Path:
    """A copy of a shared export folder (``built``) for a test that changes it."""
    import shutil

    shutil.copytree(source, folder)
    return folder


class Lazy(dict):
    """A dict whose values are made on first use by ``make(key)``: a module fixture over every backend that builds
    only what the selected tests touch (the toy backend's run in test_registry.py selects its own)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        self[key] = self.make(key)
        return self[key]
