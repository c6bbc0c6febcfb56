"""Bad input never crashes, never corrupts, never runs code: fuzzed images, broken checkpoints, failing
converters, manifests that do not belong to their model, and concurrent callers."""

import json
import os
import shutil
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nanodet_deploy import Detector
from nanodet_deploy.errors import CheckpointError
from nanodet_deploy.export import export
from nanodet_deploy.images import read_image
from nanodet_deploy.manifest import MANIFEST_NAME
from nanodet_deploy.model import load
from nanodet_deploy.parity import box_iou
from nanodet_deploy.processing import ProcessingConfig, center_priors, postprocess, warp_matrix
from nanodet_deploy.targets import BACKENDS, REFERENCE

from .helpers import VAL_IMAGES, Lazy, copy_export, error_lines, export_cli, run_cli, weights

GOOD = VAL_IMAGES / "000000000139.jpg"


# ---------------------------------------------------------------- images

def write_bad_and_odd_images(folder):
    folder.mkdir()
    image = cv2.imread(str(GOOD))
    shutil.copy(GOOD, folder / "good.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_bytes(b"this is not an image at all")
    (folder / "truncated.jpg").write_bytes(GOOD.read_bytes()[:-3000])
    (folder / "truncated.png").write_bytes(cv2.imencode(".png", image)[1].tobytes()[:5000])
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(image, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep16.png"), image.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "one_pixel.png"), image[:1, :1])
    cv2.imwrite(str(folder / "huge.jpg"), cv2.resize(image, (8000, 8000), interpolation=cv2.INTER_NEAREST))
    (folder / "unreadable.jpg").mkdir()  # a folder with an image's name


def test_a_folder_of_bad_and_odd_images(tmp_path):
    """Good and odd-but-valid images are processed; each bad one is named on one line; exit 1; no traceback."""
    write_bad_and_odd_images(tmp_path / "images")
    result = run_cli("infer", tmp_path / "images", "--checkpoint", weights(320), "--json", tmp_path / "out.json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = error_lines(result)
    for name, problem in [("empty.jpg", "empty file"), ("text.png", "not a decodable image"),
                          ("truncated.jpg", "truncated JPEG"), ("truncated.png", "not a decodable image")]:
        assert any(f"{name}: {problem}" in line for line in lines), (name, lines)
    assert lines[-1] == "4 of 10 images failed"  # a folder named like an image is skipped, not an image
    done = {e["image"].rsplit("/", 1)[-1]: e for e in json.loads((tmp_path / "out.json").read_text())}
    assert set(done) == {"good.jpg", "gray.png", "rgba.png", "deep16.png", "one_pixel.png", "huge.jpg"}
    assert (done["huge.jpg"]["width"], done["huge.jpg"]["height"]) == (8000, 8000)
    assert (done["one_pixel.png"]["width"], done["one_pixel.png"]["height"]) == (1, 1)
    for entry in done.values():
        for d in entry["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= entry["width"] and 0 <= y1 <= y2 <= entry["height"]
    # the same content in color, gray-converted, with alpha and at 16 bits finds the same best object
    best = {name: done[name]["detections"][0]["label"] for name in ("good.jpg", "rgba.png", "deep16.png")}
    assert len(set(best.values())) == 1, best


def test_a_missing_image_is_a_usage_error(tmp_path):
    result = run_cli("infer", tmp_path / "nope.jpg", "--checkpoint", weights(320))
    assert result.returncode == 2 and error_lines(result) == [f"error: {tmp_path / 'nope.jpg'}: no such file or folder"]


def test_read_image_names_the_file(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(Exception, match="x.jpg: truncated JPEG"):
        read_image(tmp_path / "x.jpg")


# ---------------------------------------------------------------- checkpoints

def test_a_ckpt_from_another_architecture_is_one_line(tmp_path):
    """A pytorch-lightning .ckpt of some other network: refused with the keys that do not fit."""
    state = {"model.backbone.layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3),
             "model.fc.weight": torch.zeros(1000, 2048), "model.fc.bias": torch.zeros(1000)}
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "resnet.ckpt")
    with pytest.raises(CheckpointError, match="resnet.ckpt"):
        load(tmp_path / "resnet.ckpt", model="nanodet-plus-m_320")
    result = run_cli("infer", GOOD, "--checkpoint", tmp_path / "resnet.ckpt", "--model", "nanodet-plus-m_320")
    lines = error_lines(result)
    assert result.returncode == 2 and len(lines) == 1 and "resnet.ckpt" in lines[0] and "missing" in lines[0]


def test_random_bytes_and_code_running_pickles_over_the_cli(tmp_path):
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    result = run_cli("infer", GOOD, "--checkpoint", tmp_path / "random.pth", "--model", "nanodet-plus-m_320")
    assert result.returncode == 2 and len(error_lines(result)) == 1 and "random.pth" in result.stderr

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Exploit()}, tmp_path / "evil.pth")
    result = run_cli("infer", GOOD, "--checkpoint", tmp_path / "evil.pth", "--model", "nanodet-plus-m_320")
    assert result.returncode == 2 and "--unsafe-load" in result.stderr and len(error_lines(result)) == 1
    assert not marker.exists()


# ---------------------------------------------------------------- exports

@pytest.fixture
def good_onnx(built, tmp_path):
    """A copy of the session's ONNX Runtime export at 320 (these tests write into it or beside it)."""
    return copy_export(built("onnxruntime", 320, gate=False)[0], tmp_path / "good" / "export")


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def leftovers(parent):
    return [p.name for p in parent.iterdir() if ".staging." in p.name or p.name.endswith(".tmp")]


def test_an_unwritable_output_folder_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = export_cli(tmp_path / "afile" / "out", "onnxruntime", "--checkpoint", weights(320))
    assert result.returncode == 2 and error_lines(result) == [
        f"error: {tmp_path / 'afile' / 'out'}: cannot write an export there ({tmp_path / 'afile'} is a file, "
        f"not a folder)"]


def test_a_write_failure_midway_leaves_no_artifact_and_the_old_export_intact(good_onnx, monkeypatch):
    """The disk fills while the manifest is written (injected ENOSPC): the error surfaces, nothing half-written
    remains, and the good export already in the folder is byte-for-byte unchanged."""
    import nanodet_deploy.export as export_module

    before = snapshot(good_onnx)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(good_onnx / MANIFEST_NAME))

    monkeypatch.setattr(export_module, "write_manifest", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export(weights(320), to="onnxruntime", out=good_onnx, precision="fp16")
    assert snapshot(good_onnx) == before and not leftovers(good_onnx.parent)


def fake_tool(tmp_path, body: str):
    tool = tmp_path / "fake-pnnx"
    tool.write_text("#!/bin/sh\n" + body + "\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return tool


def test_a_failing_converter_says_what_it_said(tmp_path, good_onnx):
    tool = fake_tool(tmp_path, 'echo "loading model.pt" ; echo "pnnx: unsupported operator aten::frobnicate" >&2 ; '
                               'exit 3')
    out = tmp_path / "ncnn"
    result = run_cli("export", "--to", "ncnn", "--checkpoint", weights(320), "--out", out,
                     env={"NANODET_DEPLOY_PNNX": str(tool)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert error_lines(result) == ["error: pnnx failed (exit 3): loading model.pt | pnnx: unsupported operator "
                                   "aten::frobnicate"]
    assert not out.exists() and not leftovers(tmp_path)


def test_a_hanging_converter_is_stopped_and_nothing_is_left(tmp_path):
    tool = fake_tool(tmp_path, "sleep 60")
    out = tmp_path / "ncnn"
    result = run_cli("export", "--to", "ncnn", "--checkpoint", weights(320), "--out", out,
                     env={"NANODET_DEPLOY_PNNX": str(tool), "NANODET_DEPLOY_TOOL_TIMEOUT": "2"})
    assert result.returncode == 1 and error_lines(result) == ["error: pnnx did not finish within 2 s"]
    assert not out.exists() and not leftovers(tmp_path)


# ---------------------------------------------------------------- manifests that do not belong

@pytest.mark.parametrize("change, fragment", [
    (lambda m: m.update(class_names=m["class_names"][:3]), "3 classes"),
    (lambda m: m.update(input_width=416, input_height=416), "416x416 input"),
])
def test_a_manifest_that_disagrees_with_its_model_is_refused(good_onnx, tmp_path, change, fragment):
    folder = tmp_path / "tampered"
    shutil.copytree(good_onnx, folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    change(manifest)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    result = run_cli("infer", GOOD, "--export", folder)
    lines = error_lines(result)
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert fragment in lines[0] and "does not belong to this model" in lines[0] and str(folder) in lines[0]


def test_a_missing_or_malformed_manifest_is_refused(good_onnx, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(good_onnx, folder)
    (folder / MANIFEST_NAME).write_text("{")
    result = run_cli("infer", GOOD, "--export", folder)
    assert result.returncode == 2 and "not valid JSON" in result.stderr and len(error_lines(result)) == 1
    (folder / MANIFEST_NAME).unlink()
    result = run_cli("infer", GOOD, "--export", folder)
    assert result.returncode == 2 and "no nanodet.json" in result.stderr and len(error_lines(result)) == 1


# ---------------------------------------------------------------- concurrency

@pytest.fixture(scope="module")
def detectors(built):
    """backend -> its Detector (FP32, 416; the gated exports test_backends.py checks), made on first use."""
    return Lazy(lambda backend: Detector(checkpoint=weights(416), threads=2) if backend == REFERENCE.name
                else Detector.from_export(built(backend, 416)[0], threads=2))


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_eight_threads_get_the_serial_results(detectors, backend):
    detector = detectors[backend]
    images = [read_image(p) for p in sorted(VAL_IMAGES.iterdir())[:12]]
    serial = [detector(image) for image in images]
    barrier = threading.Barrier(8)

    def work(index):
        if index < 8:
            barrier.wait()  # all eight threads start calling at once
        return detector(images[index % len(images)])

    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(work, range(3 * len(images))))
    for index, dets in enumerate(concurrent):
        expected = serial[index % len(images)]
        assert np.array_equal(dets.labels, expected.labels), (backend, index)
        assert np.array_equal(dets.scores, expected.scores) and np.array_equal(dets.boxes, expected.boxes)


# ---------------------------------------------------------------- properties of decode + NMS

CFG = ProcessingConfig(input_size=(96, 64), num_classes=3, iou_thr=0.6, max_dets=50)


def raw_outputs():
    n = len(center_priors(CFG.input_size, CFG.strides))
    return st.tuples(st.integers(0, 2 ** 31 - 1), st.floats(0.0, 1.0)).map(lambda a: _raw(n, *a))


def _raw(n, seed, density):
    rng = np.random.default_rng(seed)
    scores = (rng.random((n, CFG.num_classes)) < density) * rng.random((n, CFG.num_classes))
    return np.concatenate([scores, rng.normal(0, 3, (n, 32))], axis=1).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(raw=raw_outputs(), width=st.integers(1, 3000), height=st.integers(1, 3000), keep_ratio=st.booleans())
def test_postprocess_properties(raw, width, height, keep_ratio):
    cfg = ProcessingConfig(**{**CFG.__dict__, "keep_ratio": keep_ratio})
    matrix = warp_matrix((width, height), cfg.input_size, keep_ratio)
    dets = postprocess(raw, matrix, (width, height), cfg)
    boxes = dets.boxes.astype(np.float64)
    assert len(dets.scores) <= cfg.max_dets
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 2] <= width) and np.all(boxes[:, 0] <= boxes[:, 2])
    assert np.all(boxes[:, 1] >= 0) and np.all(boxes[:, 3] <= height) and np.all(boxes[:, 1] <= boxes[:, 3])
    assert np.all(np.diff(dets.scores) <= 0) and np.all(dets.scores > cfg.score_thr)
    # NMS decides in input pixels; the resize back (and letterbox shift) keeps IoU up to float rounding. Boxes
    # that reach the image border were clipped there (as NanoDet does), which can raise their IoU: not compared.
    inside = (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < width) & (boxes[:, 3] < height)
    for i in np.flatnonzero(inside):
        for j in np.flatnonzero(inside):
            if i < j and dets.labels[i] == dets.labels[j]:
                assert box_iou(boxes[i], boxes[j])[0, 0] <= cfg.iou_thr + 1e-4

    # the same network output for the image at twice the size: same detections, boxes twice as large
    double = postprocess(raw, warp_matrix((2 * width, 2 * height), cfg.input_size, keep_ratio),
                         (2 * width, 2 * height), cfg)
    assert np.array_equal(double.labels, dets.labels) and np.array_equal(double.scores, dets.scores)
    np.testing.assert_allclose(double.boxes, 2 * dets.boxes, rtol=1e-5, atol=1e-3)
