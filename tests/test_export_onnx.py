"""What only the ONNX export has: its graph, opset and recipe layout, 320, a non-square input, a dynamic batch, the
Python API, rejection and tampering, usage errors. Held to the common checks in test_backends.py."""

import json

import numpy as np
import onnx
import pytest

from nanodet_deploy import Detector
from nanodet_deploy.errors import MissingBackendError
from nanodet_deploy.images import read_image
from nanodet_deploy.manifest import read_manifest, write_manifest, MANIFEST_NAME, ManifestError
from nanodet_deploy.runtimes import runtime_class
from nanodet_deploy.targets import BACKENDS, Target

from .helpers import (CALIB_IMAGES, VAL_ANN, VAL_IMAGES, assert_reproduces_official, copy_export, error_lines,
                      export_cli, official_detections, parity_of, run_cli, some_val_images, weights)

# What every backend is held to (FP32 = PyTorch's detections, FP16 and INT8 budgets) is in test_backends.py; this
# module checks what only the ONNX export has. The exports are the session's (conftest ``built``).
INT8 = ("--int8", "--calib", CALIB_IMAGES)


@pytest.fixture(scope="module")
def fp32_416(built):
    return built("onnxruntime", 416)[0]


def test_fp32_export_is_self_describing(fp32_416):
    manifest = json.loads((fp32_416 / MANIFEST_NAME).read_text())
    assert (manifest["input_width"], manifest["input_height"], len(manifest["class_names"])) == (416, 416, 80)
    assert manifest["conversion"]["opset"] == 11 and manifest["conversion"]["simplified"] is True
    assert {"torch", "onnx", "onnxruntime", "onnxsim"} <= set(manifest["versions"])
    graph = onnx.load(str(fp32_416 / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["data"] and [o.name for o in graph.output] == ["output"]


def test_int8_is_the_shared_recipe_within_one_map_point(built):
    """416: within 1.0 mAP point of FP32 (= PyTorch, which FP32 reproduces exactly) on val-dev, QDQ around conv
    inputs and outputs, the float set chosen by sensitivity."""
    folder, _ = built("onnxruntime", 416, *INT8)
    report = parity_of(folder)
    assert report["passed"] and report["map_drop_points"] <= 1.0
    conversion = json.loads((folder / MANIFEST_NAME).read_text())["conversion"]
    assert conversion["placement"] == "conv inputs and outputs"
    assert conversion["float_selection"] == "sensitivity" and conversion["int8_layers"] >= 106


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_meets_budgets_at_320(built, precision):
    folder, result = built("onnxruntime", 320, *(["--fp16"] if precision == "fp16" else INT8))
    assert result.returncode == 0, result.stdout + result.stderr
    report = parity_of(folder)
    assert report["passed"] and report["precision"] == precision
    if precision == "fp16":
        assert report["agreement"] >= 0.98
    else:
        assert report["map_drop_points"] <= 1.0


def test_fp32_320_export_via_api(tmp_path):
    from nanodet_deploy.export import export as run_export
    from nanodet_deploy.parity import Budgets

    result = run_export(weights(320), to="onnxruntime", out=tmp_path / "m320", verify_images=VAL_IMAGES,
                        verify_ann=VAL_ANN, budgets=Budgets(), threads=2)
    assert result.accepted and result.report.agreement == 1.0 and result.report.score_max_abs <= 1e-4
    detector = Detector.from_export(tmp_path / "m320")
    assert detector.processing.input_size == (320, 320) and detector.runtime.backend == "onnxruntime"
    assert_reproduces_official({name: detector(read_image(VAL_IMAGES / name)).to_list(detector.class_names)
                                for name in official_detections(320)}, 320)


def test_non_square_416x320_end_to_end(tmp_path):
    out = tmp_path / "m416x320"
    result = export_cli(out, "onnxruntime", "--checkpoint", weights(416), "--input-size", "416,320",
                        "--verify-images", VAL_IMAGES)
    assert result.returncode == 0, result.stdout + result.stderr
    report = parity_of(out)
    assert report["passed"] and report["agreement"] == 1.0
    graph = onnx.load(str(out / "model.onnx")).graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 320, 416]  # N, C, H, W: height 320, width 416
    result = run_cli("infer", VAL_IMAGES / "000000000139.jpg", "--export", out, "--json", tmp_path / "d.json")
    entry = json.loads((tmp_path / "d.json").read_text())[0]
    assert entry["detections"] and all(0 <= d["box"][2] <= entry["width"] and 0 <= d["box"][3] <= entry["height"]
                                       for d in entry["detections"])


def test_dynamic_batch(built):
    out, result = built("onnxruntime", 320, "--dynamic-batch", gate=False)
    assert result.returncode == 0, result.stderr
    detector = Detector.from_export(out)
    batch = np.random.default_rng(0).normal(size=(3, 3, 320, 320)).astype(np.float32)
    together = detector.raw(batch)
    one_by_one = np.concatenate([detector.raw(batch[i:i + 1]) for i in range(3)])
    assert together.shape == (3, 2125, 112) and np.abs(together - one_by_one).max() < 1e-4


def test_an_artifact_over_budget_is_rejected_and_the_good_export_stays(fp32_416, tmp_path):
    out = copy_export(fp32_416, tmp_path / "keep")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = export_cli(out, "onnxruntime", "--checkpoint", weights(416), "--max-score-err", "0")
    assert bad.returncode == 1 and "rejected" in bad.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert parity_of(out / "rejected")["passed"] is False and (out / "rejected" / "model.onnx").is_file()


def test_verify_rejects_a_tampered_export(fp32_416, tmp_path):
    images = some_val_images(tmp_path / "images")  # the shift moves scores far over the FP32 budget on each one
    folder = copy_export(fp32_416, tmp_path / "tampered")
    model = onnx.load(str(folder / "model.onnx"))
    bias = next(t for t in model.graph.initializer if t.name == "head.gfl_cls.0.bias")
    values = onnx.numpy_helper.to_array(bias).copy()
    values[:80] += 0.5  # class logits of stride 8 shifted: scores move, detections change
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    onnx.save(model, str(folder / "model.onnx"))
    # a changed file no longer matches the checksum its manifest recorded: refused, nothing moved
    result = run_cli("verify", folder, "--images", images)
    assert result.returncode == 2 and "sha256 differs" in result.stderr and (folder / MANIFEST_NAME).is_file()
    # changed consistently (checksums rewritten): the gate measures it and rejects it
    write_manifest(folder, read_manifest(folder, check_files=False))
    result = run_cli("verify", folder, "--images", images)
    assert result.returncode == 1, result.stdout + result.stderr
    assert not (folder / MANIFEST_NAME).exists() and (folder / "rejected" / "model.onnx").is_file()
    page = (folder / "rejected" / "report.html").read_text()  # verify's page beside its parity.json
    assert 'data-verdict="fail"' in page and "OVER BUDGET" in page and '<div class="pair"' in page
    with pytest.raises(ManifestError, match="rejected"):
        Detector.from_export(folder)
    again = run_cli("verify", copy_export(fp32_416, tmp_path / "untouched"), "--images", images)
    assert again.returncode == 0, again.stdout + again.stderr


def test_usage_errors(tmp_path):
    for args, fragment in [
        (["export", "--checkpoint", weights(416), "--int8", "--out", tmp_path / "x"], "--int8 needs"),
        (["export", "--checkpoint", weights(416), "--to", "coreml", "--out", tmp_path / "x"], "unknown export"),
        (["infer", VAL_IMAGES, "--export", tmp_path / "nothing"], "no such export folder"),
        (["infer", VAL_IMAGES, "--checkpoint", weights(416), "--backend", "onnxruntime"], "Detector.from_export"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2 and fragment in result.stderr, (args, result.stderr)
        assert len(error_lines(result)) == 1
    assert not (tmp_path / "x").exists()


def test_missing_backend_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(BACKENDS, "fancy", Target("fancy", "nanodet_deploy.runtimes.onnxruntime:OnnxRuntime",
                                                  "package_that_is_not_here", "fancy"))
    with pytest.raises(MissingBackendError, match=r"pip install 'nanodet-deploy\[fancy\]'"):
        runtime_class("fancy")
