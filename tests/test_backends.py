"""Every registered backend under the same checks: one case per row of ``targets.TARGETS``, so a new backend's row
is picked up here with no edit (test_registry.py proves it with a toy backend). What only one backend has
lives in its test_export_<backend>.py. The exports are the session's (conftest ``built``): made once, shared."""

import json

import pytest

from nanodet_deploy.manifest import MANIFEST_NAME
from nanodet_deploy.targets import TARGETS

from .helpers import CALIB_IMAGES, assert_infer_reproduces_official, parity_of

INT8 = ("--int8", "--calib", CALIB_IMAGES)


def with_precision(precision: str) -> list[str]:
    return [name for name, target in TARGETS.items() if precision in target.precisions]


@pytest.mark.parametrize("name", list(TARGETS))
def test_fp32_reproduces_pytorch_and_the_official_detections(built, name, tmp_path):
    """Measured at 416 on val-dev against PyTorch: score max-abs 3.2e-6 (ONNX Runtime), 3e-7 (OpenVINO), 5.1e-6
    (MNN), 4.4e-6 (ncnn), 5.7e-6 (ExecuTorch); on every backend agreement 703/703 and mAP 0.3703, PyTorch's to
    the last digit."""
    folder, result = built(name, 416)
    assert result.returncode == 0, result.stdout + result.stderr
    report = parity_of(folder)
    assert report["passed"] and report["runtime_precision"] == "fp32"
    assert report["agreement"] == 1.0 and report["score_max_abs"] <= 1e-4
    assert report["map_against"] == "annotations" and abs(report["map_drop_points"]) < 1e-7
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["backend"] == name and manifest["precision"] == "fp32"
    assert manifest["conversion"]["target"] == name and set(TARGETS[name].packages) <= set(manifest["versions"])
    # ExecuTorch: split rewritten as slices, the whole graph one XNNPACK block (15 with split left outside)
    assert manifest["conversion"].get("xnnpack_blocks", 1) == 1
    # where the format has room for it, the model carries the manifest, without its own checksum (it would change)
    embedded = TARGETS[name].converter_module().embedded_manifest(folder / manifest["files"]["model"])
    assert embedded is None or json.loads(embedded) == {**manifest, "checksums": {}}
    assert_infer_reproduces_official(folder, tmp_path)


@pytest.mark.parametrize("name", with_precision("fp16"))
def test_fp16_meets_its_budget(built, name):
    folder, result = built(name, 416, "--fp16")
    assert result.returncode == 0, result.stdout + result.stderr
    report = parity_of(folder)
    assert report["passed"] and report["precision"] == "fp16" and report["agreement"] >= 0.98


@pytest.mark.parametrize("name", with_precision("int8"))
def test_int8_is_calibrated_measured_and_gated(built, name):
    """The shared recipe on 100 calibration images; the gate measures the mAP drop against annotations with its
    paired bootstrap interval, and the verdict, the exit code and where the export went follow the checks."""
    folder, result = built(name, 416, *INT8)
    report = parity_of(folder)
    conversion = json.loads((folder / MANIFEST_NAME).read_text())["conversion"]
    assert conversion["calibration_images"] == 100 and report["precision"] == "int8"
    assert report["runtime_precision"].startswith("int8") and report["map_against"] == "annotations"
    low, high = report["map_drop_points_interval"]
    assert low <= report["map_drop_points"] <= high and 0 <= report["agreement_interval"][0] <= report["agreement"]
    assert report["passed"] == all(check["passed"] is not False for check in report["checks"])
    assert result.returncode == (0 if report["passed"] else 1)
    assert (folder.name == "rejected") == (not report["passed"])
