"""The native pre/post-processing (nanodet_deploy.native: the Android app's C++ core, built at install time)
against the numpy reference implementation in processing.py, which every other test also checks."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanodet_deploy import Detector, native
from nanodet_deploy.images import read_image
from nanodet_deploy.parity import Budgets
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


# ---------------------------------------------------------------- one behaviour on bad input

ODD_CFG = ProcessingConfig(input_size=(96, 64), num_classes=3, max_dets=50)


def _outcome(function, *args):
    """("ok", detections) or (the exception's type name, its message)."""
    try:
        return "ok", function(*args)
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return type(e).__name__, str(e)


def assert_one_behaviour(raw, matrix, size, cfg=ODD_CFG):
    """The native and the numpy post-processing: the same error (type and message), or the same detections."""
    native_side, numpy_side = _outcome(postprocess, raw, matrix, size, cfg), \
        _outcome(postprocess_numpy, raw, matrix, size, cfg)
    assert native_side[0] == numpy_side[0], (native_side, numpy_side)
    if native_side[0] == "ok":
        assert_same_code_detections(numpy_side[1], native_side[1], cfg)
        assert np.isfinite(native_side[1].boxes).all()
    else:
        assert native_side[1] == numpy_side[1]
    return native_side[0]


def _odd_raw(seed: int, poison: str, dtype: str):
    n = ODD_CFG.num_points
    rng = np.random.default_rng(seed)
    raw = np.concatenate([rng.random((n, 3)) ** 3, rng.normal(0, 3, (n, 32))], axis=1)
    where = (rng.integers(0, n), rng.integers(0, 35))
    raw[where] = {"none": raw[where], "nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e300,
                  "max": np.finfo(np.float32).max}[poison]
    return raw.astype(dtype)


SIZES = st.one_of(st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
                  st.sampled_from([(0, 10), (-5, 10), (10, 2 ** 31), (2 ** 63 - 1, 1), (640.0, 480.0), (True, 1),
                                   (np.int64(640), np.int32(480)), (640,), (640, 480, 3), (2 ** 24, 2 ** 24),
                                   (2 ** 24 + 1, 10)]))
MATRICES = st.sampled_from(["warp", "warp letterbox", "zeros", "nan", "inf", "2x3", "int identity", "tiny",
                            "rotation"])


def _matrix(kind: str, size) -> np.ndarray:
    w, h = (size[0], size[1]) if len(size) >= 2 and all(isinstance(v, (int, np.integer)) and v > 0
                                                          for v in size[:2]) else (640, 480)
    if kind.startswith("warp"):
        return warp_matrix((int(w), int(h)), ODD_CFG.input_size, kind.endswith("letterbox"))
    return {"zeros": np.zeros((3, 3)), "nan": np.full((3, 3), np.nan), "inf": np.diag([np.inf, 1.0, 1.0]),
            "2x3": np.eye(3)[:2], "int identity": np.eye(3, dtype=np.int64), "tiny": np.diag([1e-200, 1e-200, 1.0]),
            "rotation": np.array([[0.0, -1.0, 90.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])}[kind]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), poison=st.sampled_from(["none", "nan", "inf", "-inf", "huge", "max"]),
       dtype=st.sampled_from(["float32", "float64", "float16", "int32"]), matrix=MATRICES, size=SIZES)
def test_native_and_numpy_postprocess_behave_alike_on_odd_inputs(seed, poison, dtype, matrix, size):
    """Random and adversarial inputs (NaN / Inf / out-of-float32 outputs, integer outputs, singular and non-finite
    matrices, sizes that are floats, booleans, zero, negative or >= 2^31): both paths raise the same error or give
    the same detections (at 5c11f11, 22 of 39 such inputs agreed: NaN distances gave inverted boxes natively)."""
    with np.errstate(all="ignore"):
        raw = _odd_raw(seed, poison, dtype)
    assert_one_behaviour(raw, _matrix(matrix, size), size)


def test_a_model_output_with_nan_is_refused_by_both_paths_with_one_error():
    """NaN distance logits: natively plausible inverted boxes ([640, 480, 0, 0]) at 5c11f11, NaN boxes in numpy;
    now ModelOutputError in both, and the gate counts the values and fails its nonfinite check."""
    from nanodet_deploy.parity import Comparison

    raw = _odd_raw(0, "none", "float32")
    raw[:, 3:] = np.nan
    matrix = warp_matrix((640, 480), ODD_CFG.input_size, False)
    assert assert_one_behaviour(raw, matrix, (640, 480)) == "ModelOutputError"
    with pytest.raises(Exception, match=r"the model produced NaN/Inf \(\d+ of \d+ output values\)"):
        postprocess(raw, matrix, (640, 480), ODD_CFG)
    comparison = Comparison(ODD_CFG, "test", "fp32")
    comparison.add(_odd_raw(0, "none", "float32"), raw, matrix, (640, 480))
    report = comparison.report().apply(Budgets())
    check = next(c for c in report.checks if c["metric"] == "nonfinite_outputs")
    assert not report.passed and check["passed"] is False and check["note"] == "the model produced NaN/Inf"
