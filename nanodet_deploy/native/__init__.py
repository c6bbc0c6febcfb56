"""The app's C++ pre/post-processing (android_demo/core), loaded with ctypes when the install built it.

``processing.preprocess`` / ``processing.postprocess`` call it when ``available()``; otherwise (no compiler at
install time, or ``NANODET_DEPLOY_NATIVE=0``) they run their numpy implementation. Both give the same
detections: tests/test_native.py compares them on val-dev (same labels and order, |Δscore| <= 1e-5,
IoU >= 0.999) and the warped images and normalised tensors bit for bit.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
# core_capi.cpp's nd_interface_version: a library built from other sources is not used (numpy runs)
INTERFACE_VERSION = 2


class Config(ctypes.Structure):
    """nd_config of core_capi.cpp."""

    _fields_ = [("input_width", ctypes.c_int), ("input_height", ctypes.c_int), ("num_classes", ctypes.c_int),
                ("reg_max", ctypes.c_int), ("strides", ctypes.POINTER(ctypes.c_int)), ("num_strides", ctypes.c_int),
                ("mean", ctypes.c_double * 3), ("std", ctypes.c_double * 3), ("keep_ratio", ctypes.c_int),
                ("score_threshold", ctypes.c_float), ("iou_threshold", ctypes.c_float),
                ("max_detections", ctypes.c_int)]


def _pointer(array: np.ndarray, ctype):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


@lru_cache(maxsize=1)
def _library():
    if os.environ.get("NANODET_DEPLOY_NATIVE", "1") == "0":
        return None
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _HERE / f"_nanodet_core{suffix}"
        if path.is_file():
            try:
                library = ctypes.CDLL(str(path))
                library.nd_interface_version.restype = ctypes.c_int
                if library.nd_interface_version() != INTERFACE_VERSION:
                    return None
            except (OSError, AttributeError):  # built for another interpreter or machine, or older sources
                return None
            library.nd_warp_kernels.restype = ctypes.c_char_p
            library.nd_warp_kernels.argtypes = []
            library.nd_warp.restype = ctypes.c_int
            library.nd_warp.argtypes = [ctypes.POINTER(ctypes.c_uint8), ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                        ctypes.POINTER(Config), ctypes.POINTER(ctypes.c_uint8),
                                        ctypes.POINTER(ctypes.c_double)]
            library.nd_preprocess.restype = ctypes.c_int
            library.nd_preprocess.argtypes = [ctypes.POINTER(ctypes.c_uint8), ctypes.c_int, ctypes.c_int,
                                              ctypes.c_int, ctypes.POINTER(Config), ctypes.POINTER(ctypes.c_float),
                                              ctypes.POINTER(ctypes.c_double)]
            library.nd_normalise.restype = None
            library.nd_normalise.argtypes = [ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(Config),
                                             ctypes.POINTER(ctypes.c_float)]
            library.nd_postprocess.restype = ctypes.c_int
            library.nd_postprocess.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_double),
                                               ctypes.c_int, ctypes.c_int, ctypes.POINTER(Config),
                                               ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float),
                                               ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]
            return library
    return None


def available() -> bool:
    """True when the native library was built at install time and is not turned off (NANODET_DEPLOY_NATIVE=0)."""
    return _library() is not None


def warp_kernels() -> str:
    """Which compilation of the C++ warp this CPU runs ("avx2+fma" or "baseline"; the same bytes), or "numpy"
    when the native library is not in use."""
    return _library().nd_warp_kernels().decode() if available() else "numpy"


@lru_cache(maxsize=16)
def _config(cfg) -> tuple[Config, np.ndarray]:
    strides = np.ascontiguousarray(cfg.strides, np.intc)
    config = Config(cfg.input_size[0], cfg.input_size[1], cfg.num_classes, cfg.reg_max, _pointer(strides, ctypes.c_int),
                    len(strides), (ctypes.c_double * 3)(*cfg.mean), (ctypes.c_double * 3)(*cfg.std),
                    int(cfg.keep_ratio), cfg.score_thr, cfg.iou_thr, cfg.max_dets)
    return config, strides  # strides kept alive with the structure that points at them


def _on_image(function, image: np.ndarray, cfg, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Call nd_warp / nd_preprocess on a BGR8 image [h, w, 3]: (output, the resize matrix 3x3 float64)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image of shape {image.shape} and dtype {image.dtype}, expected [h, w, 3] uint8")
    if image.strides[1:] != (3, 1) or image.strides[0] < 3 * image.shape[1]:  # rows may be padded, not pixels
        image = np.ascontiguousarray(image)
    config, _ = _config(cfg)
    matrix = np.empty((3, 3), np.float64)
    element = ctypes.c_uint8 if output.dtype == np.uint8 else ctypes.c_float
    if function(_pointer(image, ctypes.c_uint8), image.shape[1], image.shape[0], image.strides[0],
                ctypes.byref(config), _pointer(output, element), _pointer(matrix, ctypes.c_double)):
        raise MemoryError(f"native {function.__name__} failed")
    return output, matrix


def warp(image: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray]:
    """BGR8 image [h, w, 3] -> (its pixels at the input size [H, W, 3] uint8, the resize matrix 3x3 float64)."""
    width, height = cfg.input_size
    return _on_image(_library().nd_warp, image, cfg, np.empty((height, width, 3), np.uint8))


def preprocess(image: np.ndarray, cfg) -> tuple[np.ndarray, np.ndarray]:
    """BGR8 image [h, w, 3] -> (``normalise(warp(image))`` [1, 3, H, W] float32 in one pass, the resize matrix)."""
    width, height = cfg.input_size
    return _on_image(_library().nd_preprocess, image, cfg, np.empty((1, 3, height, width), np.float32))


def normalise(warped: np.ndarray, cfg) -> np.ndarray:
    """Warped [H, W, 3] uint8 BGR image (input size) -> [1, 3, H, W] float32 tensor."""
    config, _ = _config(cfg)
    width, height = cfg.input_size
    warped = np.ascontiguousarray(warped, np.uint8)
    if warped.shape != (height, width, 3):
        raise ValueError(f"warped image has shape {warped.shape}, expected {(height, width, 3)}")
    tensor = np.empty((1, 3, height, width), np.float32)
    _library().nd_normalise(_pointer(warped, ctypes.c_uint8), ctypes.byref(config), _pointer(tensor, ctypes.c_float))
    return tensor


def postprocess(raw: np.ndarray, matrix: np.ndarray, image_size: tuple[int, int], cfg):
    """Raw output [N, C + 4*(R+1)] (float32, C-contiguous) -> (boxes [K, 4], scores [K], labels [K], the number of
    NaN / Inf values in raw). There are no detections when that number is not 0."""
    if raw.dtype != np.float32 or not raw.flags.c_contiguous:  # C reads the memory as such
        raise ValueError(f"raw output of dtype {raw.dtype}, expected C-contiguous float32")
    config, _ = _config(cfg)
    boxes = np.empty((cfg.max_dets, 4), np.float32)
    scores = np.empty(cfg.max_dets, np.float32)
    labels = np.empty(cfg.max_dets, np.int64)
    non_finite = ctypes.c_int64(0)
    matrix = np.ascontiguousarray(matrix, np.float64)
    count = _library().nd_postprocess(_pointer(raw, ctypes.c_float), _pointer(matrix, ctypes.c_double),
                                      image_size[0], image_size[1], ctypes.byref(config),
                                      _pointer(boxes, ctypes.c_float), _pointer(scores, ctypes.c_float),
                                      _pointer(labels, ctypes.c_int64), ctypes.byref(non_finite))
    if count < 0:
        raise MemoryError("native postprocess failed")
    return boxes[:count], scores[:count], labels[:count], non_finite.value
