"""MNN: FP32, FP16, weight-only INT8 and offline INT8 of the real shared weights, run through MNN's own
runtime, under the parity gate."""

import json

import pytest

from nanodet_deploy.converters import mnn_int8
from nanodet_deploy.manifest import MANIFEST_NAME

from .helpers import CALIB_IMAGES, VAL_IMAGES, parity_of, run_cli, weights

# The common checks (FP32 = PyTorch's detections, FP16 and INT8 budgets) are in test_backends.py; the exports are
# the session's (conftest ``built``).


def test_fp32_keeps_mnns_own_prints_out_of_ours(built, tmp_path):
    """MNN's C++ prints to stdout ("MNN use ...", "device supports ..."): kept out of the CLI's output."""
    folder, result = built("mnn", 416)
    run = run_cli("infer", VAL_IMAGES / "000000000139.jpg", "--export", folder)
    for output in (result.stdout, run.stdout):
        assert "MNN use" not in output and "device supports" not in output


def test_fp16_weights_are_half_the_size(built):
    folder, _ = built("mnn", 416, "--fp16")  # measured: agreement 1.0, mAP 0.3703
    assert (folder / "model.mnn").stat().st_size < 2.6e6  # FP16 weights: 2.47 MB against 4.82 MB in FP32


def test_weight_int8_is_reported_as_weight_only(built):
    out, result = built("mnn", 416, "--weight-int8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not an activation-INT8 model" in result.stdout
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["precision"] == "weight-int8" and "not an activation-INT8" in manifest["conversion"]["weight_int8"]
    report = parity_of(out)  # measured: mAP 0.3658 (drop 0.45 point), 1.43 MB
    assert (report["precision"], report["runtime_precision"]) == ("weight-int8", "fp32") and report["passed"]
    assert report["map_drop_points"] <= 1.0


def test_int8_is_the_shared_recipe_in_mnns_compression_parameters(built):
    """INT8 by the shared recipe written as MNN compression parameters (conv inputs and outputs quantized, one
    range per sharing group; the stem and head parts always float in MNN, the sensitivity's choice on top).
    Measured at 416 with these inputs: mAP 0.3631 against FP32 0.3703, score cos 0.9895, agreement 0.809 (MNN's
    own recipe before: 0.3593 / 0.9875 / 0.792). This checks the path really quantizes (INT8 file, at most 103
    INT8 convolutions) and runs in MNN; the gate's verdict follows its checks (test_backends.py)."""
    folder, result = built("mnn", 416, "--int8", "--calib", CALIB_IMAGES)
    report = parity_of(folder)
    conversion = json.loads((folder / MANIFEST_NAME).read_text())["conversion"]
    assert conversion["calibration_method"] == "mse" and conversion["calibration_images"] == 100
    assert conversion["always_float"] == ["stem", "head"] and conversion["float_selection"] == "sensitivity"
    assert conversion["int8_layers"] + len(conversion["float_layers"]) == 110 and conversion["int8_layers"] <= 103
    assert (folder / "model.mnn").stat().st_size < 1.7e6  # INT8 weights: 1.52 MB against 4.82 MB in FP32
    assert not list(folder.glob("*.pb")) and not list(folder.glob("*.onnx"))  # no intermediates left
    assert report["runtime_precision"] == "int8" and report["map_artifact"] is not None


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
