"""The native pre/post-processing (nanodet_deploy.native: the Android app's C++ core, built at install time)
against the numpy reference implementation in processing.py, which every other test also checks."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from nanodet_deploy import Detector, native
from nanodet_deploy.images import read_image
from nanodet_deploy.processing import (ProcessingConfig, normalise, normalise_numpy, postprocess,
                                       postprocess_numpy, preprocess, warp, warp_matrix)

from .helpers import VAL_IMAGES, assert_same_code_detections, weights

pytestmark = pytest.mark.skipif(not native.available() and shutil.which("c++") is None,
                                reason="no C++ compiler: the install uses the numpy implementation")


def assert_same_detections(raw, matrix, size, cfg):
    """The same detections (``parity.same_detections`` with the SAME_CODE tolerance: |Δscore| <= 1e-6,
    IoU >= 0.9999) in the same order. Exact where it is real: the scores are the raw output's, copied, so equal to
    the bit; boxes differ by one float32 step at most (inverse matrix: closed form in C++, LU in numpy). Measured
    on val-dev at 416 (7,620 detections): scores equal, boxes within 1.2e-4 px; same on the random outputs below."""
    ours = postprocess(raw, matrix, size, cfg)
    assert_same_code_detections(postprocess_numpy(raw, matrix, size, cfg), ours, cfg)
    return len(ours)


def test_the_install_built_the_native_library():
    assert native.available(), "a C++ compiler is present but nanodet_deploy/native/_nanodet_core*.so is missing"


def test_native_postprocess_equals_numpy_on_val_dev():
    detector = Detector(checkpoint=weights(416), threads=2)
    total = 0
    for path in sorted(VAL_IMAGES.iterdir())[:40]:
        image = read_image(path)
        tensor, matrix = preprocess(image, detector.processing)
        total += assert_same_detections(detector.raw(tensor)[0], matrix, (image.shape[1], image.shape[0]),
                                        detector.processing)
    assert total > 3000


@pytest.mark.parametrize("keep_ratio", [False, True])
def test_native_postprocess_equals_numpy_on_dense_random_outputs(keep_ratio):
    """A 3-class 320x192 model's output with many overlapping candidates: NMS chains, ties and max_dets."""
    cfg = ProcessingConfig(input_size=(320, 192), num_classes=3, keep_ratio=keep_ratio)
    rng = np.random.default_rng(0)
    for trial in range(20):
        raw = np.concatenate([rng.random((cfg.num_points, 3), np.float32) ** 4,
                              rng.normal(0, 2, (cfg.num_points, 32)).astype(np.float32)], axis=1)
        raw[:50, :3] = 0.5  # equal scores: both keep the (point, class) order
        size = (int(rng.integers(1, 900)), int(rng.integers(1, 900)))
        assert assert_same_detections(raw, warp_matrix(size, cfg.input_size, keep_ratio), size, cfg) == 100


def test_native_normalise_is_bit_identical():
    cfg = ProcessingConfig(input_size=(416, 416), num_classes=80)
    for path in sorted(VAL_IMAGES.iterdir())[:10]:
        image = read_image(path)
        warped, _ = warp(image, cfg)
        assert np.array_equal(normalise(warped, cfg), normalise_numpy(warped, cfg))


def test_native_can_be_turned_off():
    code = "from nanodet_deploy import native; print(native.available())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"NANODET_DEPLOY_NATIVE": "0", "PATH": ""})
    assert result.stdout.strip() == "False"
