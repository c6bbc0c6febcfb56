"""The shared pre/post-processing, checked against independent straightforward implementations."""

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanodet_deploy import native
from nanodet_deploy.images import read_image
from nanodet_deploy.processing import (BGR8_NHWC, ProcessingConfig, _fma32, as_bgr8, center_priors, decode,
                                       multiclass_nms, normalise_numpy, postprocess, preprocess, warp, warp_boxes,
                                       warp_matrix, warp_numpy)

from .helpers import SHARED, report
from .warp_cases import FIXTURE, OPENCV_VERSION, case_name, cases, digest, synthetic_image

CFG = ProcessingConfig(input_size=(416, 416), num_classes=80)


def reference_nms(boxes, scores, labels, iou_thr):
    """torchvision's CPU nms loop over NanoDet's class-offset boxes, one box at a time, in float32."""
    boxes = boxes.astype(np.float32)
    shifted = boxes + (labels.astype(np.float32) * (boxes.max() + np.float32(1)))[:, None]
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for a, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        ix1, iy1, ix2, iy2 = shifted[i]
        iarea = (ix2 - ix1) * (iy2 - iy1)
        for j in order[a + 1:]:
            if suppressed[j]:
                continue
            x1, y1, x2, y2 = shifted[j]
            w = max(np.float32(0), min(ix2, x2) - max(ix1, x1))
            h = max(np.float32(0), min(iy2, y2) - max(iy1, y1))
            inter = w * h
            if inter / (iarea + (x2 - x1) * (y2 - y1) - inter) > iou_thr:
                suppressed[j] = True
    return np.array(keep, np.int64)


def clustered_boxes(rng, n, classes):
    """Boxes in clusters, so that suppression chains and cross-class overlaps occur."""
    centers = rng.uniform(20, 400, (max(n // 8, 1), 2))
    c = centers[rng.integers(0, len(centers), n)] + rng.normal(0, 6, (n, 2))
    wh = rng.uniform(10, 120, (n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).clip(0, 416).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32), rng.integers(0, classes, n)


@pytest.mark.parametrize("seed, n, classes", [(0, 50, 1), (1, 400, 3), (2, 1000, 10), (3, 2000, 80)])
@pytest.mark.parametrize("max_dets", [100, 10_000])
def test_nms_equals_one_box_at_a_time_reference(seed, n, classes, max_dets):
    boxes, scores, labels = clustered_boxes(np.random.default_rng(seed), n, classes)
    expected = reference_nms(boxes, scores, labels, 0.6)[:max_dets]
    assert np.array_equal(multiclass_nms(boxes, scores, labels, 0.6, max_dets), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 300), st.integers(1, 5), st.floats(0.1, 0.9))
def test_nms_properties(seed, n, classes, iou_thr):
    boxes, scores, labels = clustered_boxes(np.random.default_rng(seed), n, classes)
    keep = multiclass_nms(boxes, scores, labels, iou_thr, 100)
    assert np.all(np.diff(scores[keep]) <= 0)  # best first
    assert np.array_equal(keep, reference_nms(boxes, scores, labels, iou_thr)[:100])


def test_decode_integral_and_priors():
    """One point per level with a one-hot distribution: distances are bin * stride from (x*s, y*s)."""
    priors = center_priors((416, 416), (8, 16, 32, 64))
    assert len(priors) == 52 * 52 + 26 * 26 + 13 * 13 + 7 * 7
    assert priors[53].tolist() == [8.0, 8.0, 8.0]  # row-major: point 53 of stride 8 is (x=1, y=1)
    raw = np.zeros((len(priors), 80 + 32), np.float32)
    logits = np.full((4, 8), -50.0, np.float32)
    logits[[0, 1, 2, 3], [1, 2, 3, 4]] = 50.0  # left 1, top 2, right 3, bottom 4 bins
    raw[53, 80:] = logits.ravel()
    boxes, scores = decode(raw, CFG)
    assert np.allclose(boxes[53], [8 - 8, 0, 8 + 24, 8 + 32])  # top 8 - 16 clamped to the input
    uniform = boxes[0]  # all-zero logits: expected bin 3.5 on each side, at (0, 0)
    assert np.allclose(uniform, [0, 0, 3.5 * 8, 3.5 * 8])


def test_decode_rejects_mismatched_output():
    with pytest.raises(ValueError, match="expected"):
        decode(np.zeros((3598, 80 + 32 + 1), np.float32), CFG)


@pytest.mark.parametrize("keep_ratio", [False, True])
def test_boxes_map_back_to_the_original_image(keep_ratio):
    """A box drawn in the original image lands at M(box) in the network input and back again."""
    w, h = 640, 427
    matrix = warp_matrix((w, h), (416, 416), keep_ratio)
    box = np.array([[100.0, 50.0, 300.0, 400.0]], np.float32)
    inside = warp_boxes(box, matrix, 416, 416)
    if keep_ratio:
        s = 416 / 640
        assert np.allclose(inside, [[100 * s, 50 * s + (416 - 427 * s) / 2, 300 * s, 400 * s + (416 - 427 * s) / 2]])
    else:
        assert np.allclose(inside, [[100 * 416 / 640, 50 * 416 / 427, 300 * 416 / 640, 400 * 416 / 427]])
    assert np.allclose(warp_boxes(inside, np.linalg.inv(matrix), w, h), box, atol=1e-3)


def test_preprocess_is_warp_then_normalise():
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    cfg = ProcessingConfig(input_size=(320, 192), num_classes=80)
    tensor, matrix = preprocess(image, cfg)
    assert tensor.shape == (1, 3, 192, 320) and tensor.dtype == np.float32
    warped, warp_matrix_used = warp(image, cfg)
    assert np.array_equal(matrix, warp_matrix_used) and np.array_equal(matrix, np.diag([320 / 500, 192 / 300, 1.0]))
    expected = (warped.astype(np.float64) - [103.53, 116.28, 123.675]) / [57.375, 57.12, 58.395]
    assert np.abs(tensor[0].transpose(1, 2, 0) - expected).max() < 1e-5
    u8, _ = preprocess(image, cfg, BGR8_NHWC)
    assert np.array_equal(u8[0], warped)


@pytest.fixture(scope="module")
def opencv_warps():
    return json.loads(FIXTURE.read_text())


def test_warp_is_opencv_5_0_bit_for_bit_whichever_opencv_is_installed(opencv_warps, request):
    """``warp`` (the native C++ when built) and ``preprocess`` give OpenCV 5.0.0.93's warpPerspective bytes on
    every case of tests/warp_cases.py — 685 images (79 val-dev and 600 fidelity photos, 6 synthetic), 2,237
    warps at the presets' inputs, letterboxed, odd and tiny — with any OpenCV installed (5.1's own warp differs
    by one grey level on 0.04 % of the values). The decoded images are compared first: the decoder is OpenCV's."""
    decoded_differs, warps = [], 0
    for key, path, shape, inputs in cases(SHARED):
        image = read_image(path) if path else synthetic_image(*shape)
        if digest(image) != opencv_warps["decoded"][key]:
            decoded_differs.append(key)
            continue
        for width, height, keep_ratio in inputs:
            cfg = ProcessingConfig(input_size=(width, height), num_classes=80, keep_ratio=keep_ratio)
            warped, matrix = warp(image, cfg)
            expected = opencv_warps["warped"][case_name(width, height, keep_ratio)][key]
            assert digest(warped) == expected, (key, width, height, keep_ratio)
            if (width, height) == (416, 416) and not keep_ratio:  # the tensor is normalise(those bytes)
                tensor, tensor_matrix = preprocess(image, cfg)
                assert np.array_equal(tensor, normalise_numpy(warped, cfg)) and np.array_equal(matrix, tensor_matrix)
            warps += 1
    assert not decoded_differs, f"OpenCV {cv2.__version__} decodes {len(decoded_differs)} images differently " \
                                f"from {OPENCV_VERSION}: {decoded_differs[:5]}"
    assert warps == 2237
    report(request, f"warp: OpenCV {OPENCV_VERSION}'s bytes on {warps} warps of {len(opencv_warps['decoded'])} "
           f"images (OpenCV {cv2.__version__} installed; {'native' if native.available() else 'numpy'} warp)")


def test_numpy_warp_is_the_native_warp(opencv_warps):
    """The numpy implementation (installs without a compiler) gives the same bytes and matrix as the C++ one,
    and both OpenCV 5.0's (the fixture): val-dev at 416 and every synthetic case. The full list is checked on
    whichever runs by the test above; numpy takes ~66 ms per 416 warp, the native ~0.3 ms."""
    checked = 0
    for key, path, shape, inputs in cases(SHARED):
        if key.startswith("fidelity/"):
            continue
        image = read_image(path) if path else synthetic_image(*shape)
        for width, height, keep_ratio in (inputs if shape else inputs[:1]):
            cfg = ProcessingConfig(input_size=(width, height), num_classes=80, keep_ratio=keep_ratio)
            warped, matrix = warp_numpy(image, cfg)
            expected = opencv_warps["warped"][case_name(width, height, keep_ratio)][key]
            assert digest(warped) == expected, (key, width, height)
            if native.available():
                native_warped, native_matrix = native.warp(image, cfg)
                assert np.array_equal(native_warped, warped) and np.array_equal(native_matrix, matrix)
            checked += 1
    assert checked == 79 + 6 * 7


def test_fma32_rounds_once():
    """The numpy warp's fused multiply-add where rounding the float64 sum to float32 would round twice: a * b + c
    = 1 + 2^-23 + 2^-24 - 2^-70 lies just below the halfway point between the float32 values 1 + 2^-23 and
    1 + 2^-22; in float64 it lands on that point, which float32 then rounds to the even one, the wrong one."""
    a, b, c = np.float32(1 + 2.0 ** -23), np.float32(2.0 ** -24 * (1 - 2.0 ** -23)), np.float32(1 + 2.0 ** -23)
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(c)) == np.float32(1 + 2.0 ** -22)  # twice: wrong
    assert _fma32(a, b, c) == c
    assert _fma32(-a, b, -c) == -c
    assert _fma32(np.float32(3), np.float32(5), np.float32(0.5)) == np.float32(15.5)


def test_image_formats_become_bgr8():
    gray = np.full((10, 12), 200, np.uint8)
    assert as_bgr8(gray).shape == (10, 12, 3)
    bgra = np.zeros((10, 12, 4), np.uint8)
    assert as_bgr8(bgra).shape == (10, 12, 3)
    deep = np.full((10, 12, 3), 51400, np.uint16)
    assert as_bgr8(deep).dtype == np.uint8 and as_bgr8(deep)[0, 0, 0] == 200
    with pytest.raises(ValueError):
        as_bgr8(np.zeros((10, 12, 3), np.float32))


def test_postprocess_without_candidates_and_tiny_images():
    raw = np.zeros((3598, 112), np.float32)
    dets = postprocess(raw, warp_matrix((1, 1), (416, 416), False), (1, 1), CFG)
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)
    raw[100, 5] = 0.9
    dets = postprocess(raw, warp_matrix((1, 1), (416, 416), False), (1, 1), CFG)
    assert len(dets) == 1 and dets.labels[0] == 5 and np.all((dets.boxes >= 0) & (dets.boxes <= 1))
