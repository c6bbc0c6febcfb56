"""MNN: FP32, FP16, weight-only INT8 and offline INT8 of the real shared weights, run through MNN's own
runtime, under the parity gate."""

import json

import pytest

from nanodet_deploy.converters import mnn_int8
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
    # the model carries the manifest but not its own checksum (which it would change)
    assert json.loads(embedded_manifest(fp32_416 / "model.mnn")) == {
        **json.loads((fp32_416 / MANIFEST_NAME).read_text()), "checksums": {}}
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
    """INT8 by the shared recipe written as MNN compression parameters (conv inputs and outputs quantized, one
    range per sharing group; the stem and head parts always float in MNN, the sensitivity's choice on top).
    Measured at 416 with these inputs: mAP 0.3631 against FP32 0.3703, score cos 0.9895, agreement 0.809 (MNN's
    own recipe before: 0.3593 / 0.9875 / 0.792). This checks the path really quantizes (INT8 file, at most 103
    INT8 convolutions), runs in MNN, and that the gate's verdict and placement follow its measurement."""
    out, result = export(tmp_path_factory, "m416-int8", "--checkpoint", weights(416), "--int8", "--calib",
                         CALIB_IMAGES, *GATE)
    folder = out if (out / MANIFEST_NAME).exists() else out / "rejected"
    report = parity_of(folder)
    conversion = json.loads((folder / MANIFEST_NAME).read_text())["conversion"]
    assert conversion["calibration_method"] == "mse" and conversion["calibration_images"] == 100
    assert conversion["always_float"] == ["stem", "head"] and conversion["float_selection"] == "sensitivity"
    assert conversion["int8_layers"] + len(conversion["float_layers"]) == 110 and conversion["int8_layers"] <= 103
    assert (folder / "model.mnn").stat().st_size < 1.7e6  # INT8 weights: 1.52 MB against 4.82 MB in FP32
    assert not list(folder.glob("*.pb")) and not list(folder.glob("*.onnx"))  # no intermediates left
    assert report["runtime_precision"] == "int8" and report["map_artifact"] is not None
    within = report["map_reference"] - report["map_artifact"] <= 0.010
    assert report["passed"] == within and result.returncode == (0 if within else 1)
    assert (folder == out) == within


def test_asymmetric_parameters_cover_the_range():
    scale, zero = mnn_int8.scale_and_zero(-0.3, 2.0)
    assert (mnn_int8.QMIN - zero) * scale == pytest.approx(-0.3, abs=scale)
    assert (mnn_int8.QMAX - zero) * scale == pytest.approx(2.0, abs=scale)


def test_tensors_mnn_hands_quantization_across_share_one_range(tmp_path):
    import onnx

    from nanodet_deploy.converters.onnx import export_onnx
    from nanodet_deploy.model import load

    export_onnx(load(weights(320)).module, (320, 320), tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    nodes = {n.name: n for n in model.graph.node}
    groups = mnn_int8.sharing_groups(model, [o for n in model.graph.node for o in n.output])
    conv1, act1 = nodes["/backbone/conv1/conv1.0/Conv"].output[0], nodes["/backbone/conv1/conv1.2/LeakyRelu"].output[0]
    pool = nodes["/backbone/maxpool/MaxPool"].output[0]
    assert groups[conv1] == groups[act1] != groups[pool]  # ReLU passes it on, max-pool does not
    concat = nodes["/backbone/stage2/stage2.0/Concat"]  # the two branch outputs, the shuffle and the next split
    assert len({groups[name] for name in concat.input} | {groups[concat.output[0]]}) == 1
