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


def assert_infer_reproduces_official(export_dir, tmp_path, *options) -> subprocess.CompletedProcess:
    """``infer --export`` on val-dev gives every official 416 detection >= 0.3 (the foundation issue's
    criterion: same label, IoU >= 0.99, |score difference| <= 1e-3). Returns the infer run."""
    import json

    from nanodet_deploy.parity import unmatched

    out = tmp_path / "dets.json"
    result = run_cli("infer", VAL_IMAGES, "--export", export_dir, *options, "--json", out)
    assert result.returncode == 0, result.stderr
    ours = {e["image"].rsplit("/", 1)[-1]: e["detections"] for e in json.loads(out.read_text())}
    for ref in json.loads((OFFICIAL / "val-dev_m_416.json").read_text()):
        assert not unmatched(ref["detections"], ours[ref["image"]], 0.3, 0.99, 1e-3), ref["image"]
    return result
