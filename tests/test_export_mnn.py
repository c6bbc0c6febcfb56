"""MNN: FP32, FP16, weight-only INT8 and offline INT8 of the real shared weights, run through MNN's own
runtime, under the parity gate."""

import json

import pytest

from nanodet_deploy.converters.mnn import embedded_manifest
from nanodet_deploy.manifest import MANIFEST_NAME

from .helpers import (CALIB_IMAGES, VAL_ANN, VAL_IMAGES, assert_infer_reproduces_official, export_cli, parity_of,
                      weights)

GATE = ["--verify-images", VAL_IMAGES, "--verify-ann", VAL_ANN, "--threads", "2"]


def export(tmp_path_factory, name, *args):
    out = tmp_path_factory.mktemp("mnn") / name
    return out, export_cli(out, "mnn", *args)



@pytest.fixture(scope="module")
def fp32_416(tmp_path_factory):
    out, result = export(tmp_path_factory, "m416-fp32", "--checkpoint", weights(416), *GATE)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_fp32_reproduces_official_detections(fp32_416, tmp_path):
    report = parity_of(fp32_416)
    # measured: score max-abs 5.1e-6 against PyTorch, agreement 703/703, mAP 0.3703 = PyTorch
    assert report["passed"] and report["agreement"] == 1.0 and report["score_max_abs"] <= 1e-4
    assert json.loads(embedded_manifest(fp32_416 / "model.mnn")) == json.loads((fp32_416 / MANIFEST_NAME).read_text())
    result = assert_infer_reproduces_official(fp32_416, tmp_path)
    assert "MNN use" not in result.stdout and "device supports" not in result.stdout  # MNN's C++ prints kept out


def test_fp16_meets_budget(tmp_path_factory):
    out, result = export(tmp_path_factory, "m416-fp16", "--checkpoint", weights(416), "--fp16", *GATE)
    assert result.returncode == 0, result.stdout + result.stderr
    report = parity_of(out)  # measured: agreement 1.0, mAP 0.3703
    assert report["passed"] and report["agreement"] >= 0.98
    assert (out / "model.mnn").stat().st_size < 2.6e6  # FP16 weights: 2.47 MB against 4.82 MB in FP32


def test_weight_int8_is_reported_as_weight_only(tmp_path_factory):
    out, result = export(tmp_path_factory, "m416-wint8", "--checkpoint", weights(416), "--weight-int8", *GATE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not an activation-INT8 model" in result.stdout
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["precision"] == "weight-int8" and "not an activation-INT8" in manifest["conversion"]["weight_int8"]
    report = parity_of(out)  # measured: mAP 0.3658 (drop 0.45 point), 1.43 MB
    assert report["runtime_precision"] == "fp32 (int8 weights)" and report["passed"]
    assert report["map_reference"] - report["map_artifact"] <= 0.010


def test_int8_is_calibrated_measured_and_gated(tmp_path_factory):
    """Offline INT8 (mnnquant, EMA, stem kept float, calibration images written through the shared
    preprocessing). Measured at 416 with the same inputs: mAP 0.3498 in one run, 0.0000 in two others (MNN
    3.6.1's EMA quantization is not reproducible here) against FP32 0.3703 — over the 1.0-point budget either
    way. This checks the path runs in MNN, the gate measures it, and verdict and placement follow the
    measurement."""
    out, result = export(tmp_path_factory, "m416-int8", "--checkpoint", weights(416), "--int8", "--calib",
                         CALIB_IMAGES, *GATE)
    folder = out if (out / MANIFEST_NAME).exists() else out / "rejected"
    report = parity_of(folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["conversion"]["feature_quantize_method"] == "EMA"
    assert manifest["conversion"]["calibration_images"] == 100 and manifest["conversion"]["skipped_ops"]
    assert report["runtime_precision"] == "int8" and report["map_artifact"] is not None
    within = report["map_reference"] - report["map_artifact"] <= 0.010
    assert report["passed"] == within and result.returncode == (0 if within else 1)
    assert (folder == out) == within
