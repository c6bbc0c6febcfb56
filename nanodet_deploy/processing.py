"""The ONE copy of pre- and post-processing that every runtime, the CLI and the tests use (numpy, no OpenCV,
no torch). It follows the official NanoDet val pipeline and post-process exactly:

- resize by NanoDet's ``cv2.warpPerspective`` with a pure scale matrix (stretch) or a centred letterbox
  (keep_ratio); it samples pixels differently from ``cv2.resize``, and parity depends on it. The warp is ours
  (``warp``): OpenCV 5.0's float32 bilinear kernel bit for bit, in C++ and numpy, so the pixels — and the boxes —
  do not depend on the installed OpenCV, which only decodes images and videos and draws;
- normalise BGR with mean/std; CHW float32;
- decode: softmax over reg_max+1 bins, integral, distances x stride from centre priors at (x*s, y*s), boxes
  clamped to the network input (W, H); its exp is the C++ core's (``exp_nonpositive``), so both decoders give the
  same bits;
- every (point, class) with score > score_thr is a candidate (multi-label), per-class NMS suppressing when
  IoU > iou_thr (no "+1" in areas, float32 like torchvision's), the max_dets best kept;
- boxes mapped back through the inverse warp matrix and clipped to the original image.

The warp, the normalisation and everything after inference also exist in C++ (android_demo/core, the Android
app's code): when the install built it (nanodet_deploy.native), ``warp``, ``normalise`` and ``postprocess`` run
it — the same numbers, faster (benchmarks/preprocess.py; benchmarks/decode_nms.py: decode+NMS 0.95 vs 2.23 ms
median per val-dev image at 416 right after inference, 2-core Xeon) — and the numpy versions below stay the
reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from nanodet_deploy import native
from nanodet_deploy.errors import ModelOutputError

# The official evaluation defaults (NanoDetPlusHead.get_bboxes).
SCORE_THR = 0.05
IOU_THR = 0.6
MAX_DETS = 100
# What a runtime takes: the normalised float tensor [1, 3, H, W], or the warped 8-bit BGR image [1, H, W, 3] when
# the export normalises inside its graph (OpenVINO's PrePostProcessor, `export --u8-input`): the Python side then
# skips the normalisation and the float tensor's memory.
FLOAT_NCHW = "float-nchw"
BGR8_NHWC = "bgr8-nhwc"
INPUT_FORMATS = (FLOAT_NCHW, BGR8_NHWC)
# The largest network input side anything accepts (presets are 320 and 416; NanoDet trains up to 640). A
# manifest or option beyond it is refused before a backend allocates for it.
MAX_INPUT_SIDE = 2048


@dataclass(frozen=True)
class ProcessingConfig:
    """What pre/post-processing needs to know about a model: part of every export's manifest."""

    input_size: tuple[int, int]  # (width, height)
    num_classes: int
    strides: tuple[int, ...] = (8, 16, 32, 64)
    reg_max: int = 7
    mean: tuple[float, float, float] = (103.53, 116.28, 123.675)
    std: tuple[float, float, float] = (57.375, 57.12, 58.395)
    keep_ratio: bool = False
    score_thr: float = SCORE_THR
    iou_thr: float = IOU_THR
    max_dets: int = MAX_DETS

    @property
    def num_points(self) -> int:
        return len(center_priors(self.input_size, self.strides))

    @property
    def output_channels(self) -> int:
        return self.num_classes + 4 * (self.reg_max + 1)


@dataclass
class Detections:
    """Detections of one image, best first: boxes [K, 4] x1y1x2y2 in original-image pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int] = field(default=(0, 0))  # (width, height) of the original image

    def __len__(self) -> int:
        return len(self.scores)

    def to_list(self, class_names) -> list[dict]:
        """The JSON contract: [{"label", "name", "score", "box": [x1, y1, x2, y2]}]."""
        return [{"label": int(lab), "name": class_names[lab], "score": float(s), "box": [float(v) for v in b]}
                for b, s, lab in zip(self.boxes, self.scores, self.labels)]

    @classmethod
    def from_list(cls, detections: list[dict], image_size: tuple[int, int] = (0, 0)) -> "Detections":
        """Back from the JSON contract (``to_list``, ``infer --json``, the official reference detections)."""
        return cls(np.array([d["box"] for d in detections], np.float64).reshape(-1, 4),
                   np.array([d["score"] for d in detections], np.float64),
                   np.array([d["label"] for d in detections], np.int64), image_size=tuple(image_size))


# ---------------------------------------------------------------- preprocessing

def warp_matrix(src_size: tuple[int, int], dst_size: tuple[int, int], keep_ratio: bool) -> np.ndarray:
    """NanoDet's ``get_resize_matrix``: (w, h) of the image -> (W, H) of the network input, float64 3x3.

    Written out rather than as NanoDet's product of three matrices: the same numbers as the C++ core's
    ``resize_matrix`` on every machine (numpy's ``@`` may run BLAS kernels, which fuse multiply-adds on some
    CPUs and not on others)."""
    (w, h), (dw, dh) = src_size, dst_size
    if not keep_ratio:
        return np.array([[dw / w, 0, 0], [0, dh / h, 0], [0, 0, 1]], np.float64)
    ratio = dh / h if w / h < dw / dh else dw / w
    # shift @ scale @ center, entry by entry as nanodet_core.cpp multiplies them
    return np.array([[ratio, 0, ratio * (-w / 2) + 0.5 * dw], [0, ratio, ratio * (-h / 2) + 0.5 * dh], [0, 0, 1]],
                    np.float64)


def as_bgr8(image: np.ndarray) -> np.ndarray:
    """An H x W x 3 uint8 BGR view of any OpenCV-style image (gray, BGRA, 16-bit), as cv2.imread would give."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"image dtype {image.dtype} is not supported (uint8 or uint16 BGR)")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"image of shape {image.shape} is not an H x W (x 1/3/4) image")


def warp(image: np.ndarray, cfg: ProcessingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Any OpenCV-style image -> (its pixels at the network input, BGR8 [H, W, 3]; the warp matrix image->input).

    The official ``cv2.warpPerspective`` (bilinear, black border) as OpenCV 5.0 computes it on x86, owned here so
    that the pixels do not depend on the installed OpenCV (5.1 moves 0.04 % of the values by one grey level, which
    moved scores by up to 9.7e-4 at 416 and left the official detection lists reproduced on 59 of 79 images).
    Runs the C++ core's warp (nanodet_deploy.native, vectorised) when built, else ``warp_numpy``; both equal
    OpenCV 5.0.0.93's output on every val-dev and fidelity image (tests/test_processing.py, hashes saved in
    tests/fixtures)."""
    image = _image_of(image)
    if native.available():
        return native.warp(image, cfg)
    return warp_numpy(image, cfg)


def _image_of(image: np.ndarray) -> np.ndarray:
    image = as_bgr8(image)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image of shape {image.shape} has no pixels")
    if max(image.shape[:2]) > MAX_IMAGE_SIDE:
        raise ValueError(f"image of shape {image.shape}: sides up to {MAX_IMAGE_SIDE} pixels")
    return image


def warp_numpy(image: np.ndarray, cfg: ProcessingConfig) -> tuple[np.ndarray, np.ndarray]:
    """``warp`` in numpy (the implementation without the native library; slow: ~66 ms per val-dev image at 416
    against ~0.3 ms native, benchmarks/preprocess.py).

    OpenCV 5.0's float32 bilinear kernel, step for step as android_demo/core/nanodet_core.cpp's ``warp``: the
    inverse matrix in float32; a resize matrix only scales and shifts, so the source x of an output pixel is
    fma(m0, x, m2) and its source y is y * m4 + m5 (float32, unfused); floor, weight = coordinate - floor;
    neighbours outside the image are black; top = fma(wx, right - left, left) on the two source rows, then
    fma(wy, bottom - top, top), rounded half to even and saturated to 0..255."""
    h, w = image.shape[:2]
    width, height = cfg.input_size
    matrix = warp_matrix((w, h), cfg.input_size, cfg.keep_ratio)
    inverse = _inverse3(matrix).astype(np.float32)
    x_first, x_weight = _taps(_fma32(inverse[0, 0], np.arange(width, dtype=np.float32), inverse[0, 2]), w)
    y_first, y_weight = _taps(np.arange(height, dtype=np.float32) * inverse[1, 1] + inverse[1, 2], h)
    padded = np.zeros((h + 2, w + 2, 3), np.uint8)  # one black pixel around the image: index -1 and w / h
    padded[1:-1, 1:-1] = image

    def row_pairs(rows):  # (left, right) neighbours of every output column on these source rows
        rows = padded[rows + 1]
        return rows[:, x_first[0] + 1].astype(np.float32), rows[:, x_first[1] + 1].astype(np.float32)

    (top_left, top_right), (bottom_left, bottom_right) = row_pairs(y_first[0]), row_pairs(y_first[1])
    weight = x_weight[None, :, None]
    top = _fma32(weight, top_right - top_left, top_left)
    bottom = _fma32(weight, bottom_right - bottom_left, bottom_left)
    value = _fma32(y_weight[:, None, None], bottom - top, top)
    return np.clip(np.rint(value), 0, 255).astype(np.uint8), matrix



def _taps(coordinates: np.ndarray, size: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Float32 sample coordinates -> ((first, second) neighbour index, each clamped to -1..size, where -1 and
    size are the black border), the second neighbour's weight."""
    first = np.floor(coordinates)
    weight = coordinates - first
    first = first.astype(np.int64)
    return (np.clip(first, -1, size), np.clip(first + 1, -1, size)), weight


def _inverse3(m: np.ndarray) -> np.ndarray:
    """cv::invert's closed form for 3x3 (the adjugate times 1/det), as nanodet_core.cpp's ``inverse``: OpenCV's
    warp inverts its matrix this way, and float32(inverse) is what its kernel samples with."""
    m = [float(v) for v in np.asarray(m, np.float64).ravel()]
    det = (m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
           + m[2] * (m[3] * m[7] - m[4] * m[6]))
    d = 1.0 / det if det != 0 else 0.0
    return np.array([(m[4] * m[8] - m[5] * m[7]) * d, (m[2] * m[7] - m[1] * m[8]) * d, (m[1] * m[5] - m[2] * m[4]) * d,
                     (m[5] * m[6] - m[3] * m[8]) * d, (m[0] * m[8] - m[2] * m[6]) * d, (m[2] * m[3] - m[0] * m[5]) * d,
                     (m[3] * m[7] - m[4] * m[6]) * d, (m[1] * m[6] - m[0] * m[7]) * d, (m[0] * m[4] - m[1] * m[3]) * d],
                    np.float64).reshape(3, 3)


def _fma32(a, b, c) -> np.ndarray:
    """float32 fused multiply-add: a * b + c rounded once (IEEE fmaf), for float32 inputs, in numpy.

    The product of two float32 is exact in float64; the float64 sum is not always, and rounding it to float32
    rounds twice. That differs from rounding once only where the float64 sum lands exactly halfway between two
    float32 neighbours while the exact sum does not: its error term (TwoSum, exact) then says which side the
    exact sum lies on, and the sum is moved one float64 step that way. (Normal float32 range; the warp's
    values are coordinates and grey levels.)"""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    product = a * b
    total = product + c
    virtual = total - product
    error = (product - (total - virtual)) + (c - virtual)
    halfway = (np.asarray(total).view(np.uint64) & np.uint64(0x1FFFFFFF)) == np.uint64(0x10000000)
    fix = halfway & (error != 0)
    if fix.any():
        total = np.where(fix, np.nextafter(total, np.where(error > 0, np.inf, -np.inf)), total)
    return total.astype(np.float32)


def preprocess(image: np.ndarray, cfg: ProcessingConfig,
               input_format: str = FLOAT_NCHW) -> tuple[np.ndarray, np.ndarray]:
    """BGR image -> (input [1, 3, H, W] float32 — or [1, H, W, 3] uint8 for BGR8_NHWC —, warp matrix
    image->input). The float tensor is ``normalise(warp(image))``; natively in one pass, without the bytes."""
    if input_format == FLOAT_NCHW and native.available():
        return native.preprocess(_image_of(image), cfg)
    warped, matrix = warp(image, cfg)
    return (warped[None] if input_format == BGR8_NHWC else normalise(warped, cfg)), matrix


def normalise(warped: np.ndarray, cfg: ProcessingConfig) -> np.ndarray:
    """The warped H x W x 3 uint8 BGR image -> the float32 tensor [1, 3, H, W] (native when built: the table's
    arithmetic in C++, 0.34-0.49 ms instead of 1.2-2.1 ms at 416, medians over val-dev in repeated runs).
    ``preprocess`` does not call it natively: there warp and normalisation are one pass."""
    if native.available() and warped.shape == (cfg.input_size[1], cfg.input_size[0], 3):
        return native.normalise(warped, cfg)
    return normalise_numpy(warped, cfg)


def normalise_numpy(warped: np.ndarray, cfg: ProcessingConfig) -> np.ndarray:
    """``normalise`` in numpy (the implementation without the native library)."""
    # through a per-channel table of the 256 possible values, written straight into the CHW tensor: the same
    # float32 numbers as computing (x - mean) * (1/std) per pixel, at ~1/10 of the time
    table = _normaliser_table(cfg.mean, cfg.std)
    tensor = np.empty((1, 3, *warped.shape[:2]), np.float32)
    for channel in range(3):
        np.take(table[channel], warped[:, :, channel], out=tensor[0, channel])
    return tensor


@lru_cache(maxsize=8)
def _normaliser_table(mean, std) -> np.ndarray:
    """[3, 256] float32: (v - mean) * (1/std) in float32, the order of NanoDet's cv2.subtract / cv2.multiply."""
    mean = np.asarray(mean, np.float32)[:, None]
    inv_std = (1.0 / np.asarray(std, np.float64)).astype(np.float32)[:, None]
    return (np.arange(256, dtype=np.float32)[None, :] - mean) * inv_std


# ---------------------------------------------------------------- decoding

@lru_cache(maxsize=16)
def center_priors(input_size: tuple[int, int], strides: tuple[int, ...]) -> np.ndarray:
    """[N, 3] (x, y, stride) of every output point, stride 8 -> 64, row-major per level (x*s, y*s, no +0.5)."""
    w, h = input_size
    levels = []
    for s in strides:
        fw, fh = -(-w // s), -(-h // s)  # ceil, as the official featmap sizes
        ys, xs = np.meshgrid(np.arange(fh, dtype=np.float32) * s, np.arange(fw, dtype=np.float32) * s,
                             indexing="ij")
        levels.append(np.stack([xs.ravel(), ys.ravel(), np.full(fw * fh, s, np.float32)], axis=1))
    priors = np.concatenate(levels)
    priors.setflags(write=False)
    return priors


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """exp of float32 values <= 0, as the C++ core computes it (nanodet_core.cpp's ``exp_nonpositive``, Cephes'
    expf: within 1 ulp of the correctly rounded exp on every float in [-87, 0]), operation for operation in
    float32, so both decoders give the same bits: numpy's and glibc's exp differ in the last bit, which moved a
    box by one float32 step."""
    f = np.float32
    x = np.maximum(np.asarray(x, np.float32), f(-87))
    shifter = f(12582912)  # 1.5 * 2^23: adding it rounds to a whole number (half to even)
    t = x * f(1.44269504) + shifter
    n = t - shifter
    r = (x - n * f(0.693359375)) - n * f(-2.12194440e-4)
    p = np.full_like(r, f(1.9875691500e-4))
    for coefficient in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + f(coefficient)
    y = p * (r * r) + r + f(1)
    n_bits = (t.view(np.int32) - np.int32(0x4B400000)) << 23  # n sits in t's low mantissa bits
    return (y.view(np.int32) + n_bits).view(np.float32)  # y * 2^n


def decode_boxes(reg_logits: np.ndarray, priors: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Distance logits [P, 4*(R+1)] at priors [P, 3] -> boxes [P, 4] x1y1x2y2 clamped to the input (W, H).

    The C++ core's arithmetic step for step (float32, the bins summed in order), so the boxes are the same bits."""
    bins = reg_logits.shape[1] // 4
    logits = reg_logits.reshape(-1, 4, bins).astype(np.float32, copy=False)
    exp = exp_nonpositive(logits - logits.max(axis=2, keepdims=True))
    total, weighted = exp[:, :, 0].copy(), np.zeros(exp.shape[:2], np.float32)
    for i in range(1, bins):
        total += exp[:, :, i]
        weighted += exp[:, :, i] * np.float32(i)
    distances = weighted / total * priors[:, 2:3]
    x, y = priors[:, 0], priors[:, 1]
    w, h = input_size
    return np.stack([np.clip(x - distances[:, 0], 0, w), np.clip(y - distances[:, 1], 0, h),
                     np.clip(x + distances[:, 2], 0, w), np.clip(y + distances[:, 3], 0, h)], axis=1)


def check_raw(raw: np.ndarray, cfg: ProcessingConfig) -> None:
    expected = (cfg.num_points, cfg.output_channels)
    if raw.shape != expected:
        raise ValueError(f"raw output has shape {raw.shape}, expected {expected} for "
                         f"{cfg.input_size[0]}x{cfg.input_size[1]} input, {cfg.num_classes} classes, "
                         f"reg_max {cfg.reg_max}")


def decode(raw: np.ndarray, cfg: ProcessingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Raw output [N, C + 4*(R+1)] of one image -> (boxes [N, 4] in input pixels, scores [N, C])."""
    check_raw(raw, cfg)
    priors = center_priors(tuple(cfg.input_size), tuple(cfg.strides))
    c = cfg.num_classes
    return decode_boxes(raw[:, c:], priors, cfg.input_size), raw[:, :c]


# ---------------------------------------------------------------- NMS

# Candidates are resolved in score-ordered chunks of this size, stopping once max_dets are kept. On val-dev at
# 416 the 100th kept box sits at candidate rank 453 (median) / 717 (max) of ~2000 candidates, so 4-6 chunks
# suffice. Measured decode+NMS median per image: 64 -> 1.56 ms, 128 -> 1.28 ms, 256 -> 1.71 ms,
# 512 -> 6.5 ms (the in-chunk IoU matrix is quadratic).
NMS_CHUNK = 128


def candidates(scores: np.ndarray, score_thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (point, class) with score > score_thr (multi-label, as NanoDet): (points, labels, scores)."""
    # flatnonzero on a contiguous copy: 5x faster than row-wise reductions on the strided class slice
    flat = np.ascontiguousarray(scores)
    index = np.flatnonzero(flat > score_thr)
    points, labels = np.divmod(index, flat.shape[1])
    return points, labels, flat.ravel()[index]


def multiclass_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_thr: float,
                   max_dets: int) -> np.ndarray:
    """Per-class greedy NMS of candidate ``boxes`` [K, 4]; indices of the best ``max_dets`` kept, best first.

    Same result as NanoDet's ``batched_nms`` with torchvision's ``nms``: boxes are offset per class by
    label * (max coordinate + 1) so classes never overlap, IoU is computed in float32 on the offset boxes,
    and a box is suppressed when its IoU with a kept, higher-scoring box is > iou_thr. Suppression depends
    only on higher-scoring boxes, so candidates are resolved chunk by chunk in score order and the work stops
    once max_dets are kept: each chunk is checked against the boxes kept so far, then greedily within itself
    (its kept set is the fixed point of "kept = alive and not overlapped by a kept earlier box of the chunk",
    reached in as many iterations as the longest suppression chain).
    """
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order].astype(np.float32, copy=False)
    shifted = boxes + (labels[order].astype(np.float32) * (boxes.max() + np.float32(1)))[:, None]
    areas = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    kept = np.zeros(0, np.int64)
    for start in range(0, len(order), NMS_CHUNK):
        chunk = np.arange(start, min(start + NMS_CHUNK, len(order)))
        if len(kept):  # drop what the boxes kept so far suppress, then resolve the rest among themselves
            chunk = chunk[~(_iou(shifted[chunk], areas[chunk], shifted[kept], areas[kept]) > iou_thr).any(axis=1)]
        overlaps = np.triu(_iou(shifted[chunk], areas[chunk], shifted[chunk], areas[chunk]) > iou_thr, k=1)
        keep = np.ones(len(chunk), bool)
        if overlaps.any():
            while True:
                new_keep = ~(overlaps & keep[:, None]).any(axis=0)
                if np.array_equal(new_keep, keep):
                    break
                keep = new_keep
        kept = np.concatenate([kept, chunk[keep]])
        if len(kept) >= max_dets:
            break
    return order[kept[:max_dets]]


def _iou(a: np.ndarray, area_a: np.ndarray, b: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU [len(a), len(b)] in float32, areas without "+1" (torchvision's formula and order)."""
    w = np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0])
    h = np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    return inter / (area_a[:, None] + area_b - inter)


# ---------------------------------------------------------------- back to the image

def warp_boxes(boxes: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes through a 3x3 matrix (NanoDet's ``warp_boxes``), clipped to [0, width] x [0, height]."""
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 4), np.float32)
    corners = np.ones((n * 4, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)
    corners = corners @ matrix.T
    corners = (corners[:, :2] / corners[:, 2:3]).reshape(n, 8)
    xs, ys = corners[:, [0, 2, 4, 6]], corners[:, [1, 3, 5, 7]]
    out = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out.astype(np.float32)


# The largest original-image side post-processing accepts: boxes are float32, whose whole numbers are exact up
# to 2^24, and the native core takes sides as C ints (a width >= 2^31 wrapped around there)
MAX_IMAGE_SIDE = 1 << 24


def checked_postprocess_inputs(raw, matrix, image_size, cfg: ProcessingConfig):
    """(raw as C-contiguous float32, matrix as float64 3x3, image_size as two Python ints): what both
    post-processing paths get, checked once here so that the native and the numpy one cannot behave differently
    on bad input: ValueError for a wrong shape, type or value. NaN / Inf in the output are each path's last check
    (``refuse_non_finite``): the native one counts them in its pass over the output."""
    raw = np.asarray(raw)
    if raw.dtype.kind != "f":
        raise ValueError(f"raw output of dtype {raw.dtype}, expected floating point")
    check_raw(raw, cfg)
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf: refused as non-finite
        raw = np.ascontiguousarray(raw, np.float32)
    matrix = np.asarray(matrix)
    if matrix.shape != (3, 3) or matrix.dtype.kind not in "fiu":
        raise ValueError(f"warp matrix of shape {matrix.shape} and dtype {matrix.dtype}, expected 3 x 3 numbers")
    matrix = np.ascontiguousarray(matrix, np.float64)
    if not (np.isfinite(matrix).all() and np.isfinite(_inverse3(matrix)).all() and _determinant(matrix) != 0):
        raise ValueError("warp matrix is singular or not finite: boxes cannot be mapped back to the image")
    if not (len(image_size) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                         and 1 <= v <= MAX_IMAGE_SIDE for v in image_size)):
        raise ValueError(f"image size {tuple(image_size)!r}: two whole numbers from 1 to {MAX_IMAGE_SIDE} expected")
    return raw, matrix, (int(image_size[0]), int(image_size[1]))


def refuse_non_finite(count: int, raw: np.ndarray) -> None:
    """ModelOutputError when ``count`` values of the raw output are NaN / Inf: a broken model must not look like a
    working one (natively NaN distances became inverted boxes, in numpy NaN boxes)."""
    if count:
        raise ModelOutputError(f"the model produced NaN/Inf ({count} of {raw.size} output values)")


def _determinant(m: np.ndarray) -> float:
    m = [float(v) for v in m.ravel()]
    return (m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
            + m[2] * (m[3] * m[7] - m[4] * m[6]))


def postprocess(raw: np.ndarray, matrix: np.ndarray, image_size: tuple[int, int],
                cfg: ProcessingConfig) -> Detections:
    """Raw output [N, C + 4*(R+1)] of one image -> detections in original-image pixels.

    Runs the app's C++ decoder (nanodet_deploy.native) when the install built it, else ``postprocess_numpy``;
    the same detections either way (tests/test_native.py), and the same errors (``checked_postprocess_inputs``)."""
    raw, matrix, image_size = checked_postprocess_inputs(raw, matrix, image_size, cfg)
    if native.available():
        boxes, scores, labels, non_finite = native.postprocess(raw, matrix, image_size, cfg)
        refuse_non_finite(non_finite, raw)
        return Detections(boxes, scores, labels, image_size=image_size)
    return _postprocess_numpy(raw, matrix, image_size, cfg)


def postprocess_numpy(raw: np.ndarray, matrix: np.ndarray, image_size: tuple[int, int],
                      cfg: ProcessingConfig) -> Detections:
    """``postprocess`` in numpy (the implementation without the native library)."""
    return _postprocess_numpy(*checked_postprocess_inputs(raw, matrix, image_size, cfg), cfg)


def _postprocess_numpy(raw: np.ndarray, matrix: np.ndarray, image_size: tuple[int, int],
                       cfg: ProcessingConfig) -> Detections:
    refuse_non_finite(raw.size - int(np.isfinite(raw).sum()), raw)  # ~50 us at 416 (3,598 x 112 values)
    c = cfg.num_classes
    points, labels, scores = candidates(raw[:, :c], cfg.score_thr)
    # decode only the points holding a candidate (points come sorted: unique them without a sort)
    first = np.ones(len(points), bool)
    first[1:] = points[1:] != points[:-1]
    rows = points[first]
    priors = center_priors(tuple(cfg.input_size), tuple(cfg.strides))[rows]
    boxes = decode_boxes(raw[rows, c:], priors, cfg.input_size)[np.cumsum(first) - 1]
    keep = multiclass_nms(boxes, scores, labels, cfg.iou_thr, cfg.max_dets)
    width, height = image_size
    return Detections(warp_boxes(boxes[keep], np.linalg.inv(matrix), width, height),
                      scores[keep].astype(np.float32), labels[keep], image_size=(width, height))
