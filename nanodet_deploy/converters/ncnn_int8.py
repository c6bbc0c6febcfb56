"""ncnn INT8 in Python: a calibration table like ncnn2table and a writer like ncnn2int8.

The pip ``ncnn`` package has neither tool, and ncnn2table resizes calibration images its own way; here the
calibration tensors come from the SHARED preprocessing, so INT8 sees exactly what inference sees.

Table: per-output-channel weight scales ``127 / absmax`` for every Convolution (per group for
ConvolutionDepthWise; 3x3 stride-1 convolutions get 6-bit weights, ``31 / absmax``, because ncnn runs them with
int8 Winograd F(4,3), as ncnn2table does), and one scale per convolution input blob from the activations of the
FP32 model over the calibration tensors: KL divergence (2048-bin histogram of |x| folded to 128 levels,
TensorRT's method, as ncnn2table), ACIQ (Gaussian clip of the absmax), or plain absmax.

Writer: the layer parameter ``8=`` (int8_scale_term: 2 for Convolution, per-channel; 1 for ConvolutionDepthWise,
per-group), int8 weights with ncnn's int8 storage tag, then the float biases, weight scales and input scale in
the order ncnn's ``load_model`` reads them. Layers kept in float are left untouched.
"""

from __future__ import annotations

import numpy as np

from .. import ncnn_format
from ..ncnn_format import Layer, NcnnModel

HISTOGRAM_BINS = 2048
TARGET_BINS = 128
METHODS = ("kl", "mse", "aciq", "minmax")
ACIQ_ALPHA_8BIT = 3.92403714  # clip = alpha * sigma for an 8-bit Gaussian (Banner et al., ACIQ)


def weight_scales(layer: Layer) -> np.ndarray:
    """Per output channel (Convolution) or per group (ConvolutionDepthWise) ``levels / absmax``."""
    weight = layer.weights[0][0].astype(np.float32)
    groups = layer.int_param(0) if layer.type == "Convolution" else layer.int_param(7, 1)
    absmax = np.abs(weight.reshape(groups, -1)).max(axis=1)
    levels = 31.0 if _winograd_int8(layer) else 127.0
    return np.where(absmax > 0, levels / np.maximum(absmax, 1e-30), 1.0).astype(np.float32)


def _winograd_int8(layer: Layer) -> bool:
    """ncnn runs int8 3x3 stride-1 dilation-1 Convolutions with Winograd F(4,3), which needs 6-bit weights."""
    kernel = (layer.int_param(1), layer.int_param(11, layer.int_param(1)))
    stride = (layer.int_param(3, 1), layer.int_param(13, layer.int_param(3, 1)))
    dilation = (layer.int_param(2, 1), layer.int_param(12, layer.int_param(2, 1)))
    return layer.type == "Convolution" and kernel == (3, 3) and stride == (1, 1) and dilation == (1, 1)


def source_blobs(model: NcnnModel) -> dict[str, str]:
    """Blob -> the blob it is a copy of (a Split's outputs are its input), so each tensor is measured once."""
    source = {}
    for layer in model.layers:
        if layer.type == "Split":
            origin = source.get(layer.bottoms[0], layer.bottoms[0])
            source.update({top: origin for top in layer.tops})
    return source


class ActivationStats:
    """|x| statistics of one blob over the calibration set: absmax (first pass), histogram (second pass)."""

    def __init__(self):
        self.absmax = 0.0
        self.size = 0
        self.histogram = np.zeros(HISTOGRAM_BINS, np.int64)

    def add_absmax(self, values: np.ndarray) -> None:
        self.absmax = max(self.absmax, float(np.abs(values).max()))
        self.size = values.size

    def add_histogram(self, values: np.ndarray) -> None:
        magnitudes = np.abs(values[values != 0])  # ncnn2table skips exact zeros
        if self.absmax > 0 and magnitudes.size:
            index = np.minimum((magnitudes * (HISTOGRAM_BINS / self.absmax)).astype(np.int64), HISTOGRAM_BINS - 1)
            self.histogram += np.bincount(index, minlength=HISTOGRAM_BINS)

    def threshold(self, method: str) -> float:
        if method == "minmax" or self.absmax == 0:
            return self.absmax
        if method == "aciq":
            return aciq_threshold(self.absmax, self.size)
        if method == "mse":
            return (mse_threshold_bin(self.histogram) + 0.5) * self.absmax / HISTOGRAM_BINS
        return (kl_threshold_bin(self.histogram) + 0.5) * self.absmax / HISTOGRAM_BINS


def aciq_threshold(absmax: float, count: int) -> float:
    """ACIQ's Gaussian clip: sigma estimated from the expected maximum of ``count`` Gaussian samples."""
    gaussian_const = (0.5 * 0.35) * (1 + np.sqrt(np.pi * np.log(4)))
    sigma = absmax * 2 * gaussian_const / np.sqrt(2 * np.log(max(count, 2)))
    return float(min(ACIQ_ALPHA_8BIT * sigma, absmax))


def mse_threshold_bin(histogram: np.ndarray) -> int:
    """The histogram bin to clip at that minimises the expected squared error of 8-bit symmetric quantization:
    clipping error of the values above it plus rounding error (step^2 / 12) of the values below."""
    histogram = histogram.astype(np.float64)
    centers = np.arange(HISTOGRAM_BINS) + 0.5
    thresholds = np.arange(TARGET_BINS, HISTOGRAM_BINS) + 0.5
    # sum over bins above T of h (c - T)^2 = S2 - 2 T S1 + T^2 S0 with suffix sums S_k = sum h c^k
    suffix = [np.cumsum((histogram * centers ** k)[::-1])[::-1] for k in range(3)]
    above = np.arange(TARGET_BINS, HISTOGRAM_BINS) + 1
    s0, s1, s2 = (np.append(sk, 0.0)[above] for sk in suffix)
    clip = s2 - 2 * thresholds * s1 + thresholds ** 2 * s0
    rounding = (suffix[0][0] - s0) * (thresholds / 127) ** 2 / 12
    return int(TARGET_BINS + np.argmin(clip + rounding))


def kl_threshold_bin(histogram: np.ndarray) -> int:
    """The histogram bin to clip at that minimises KL(P || Q), P the clipped distribution (outliers folded into
    its last bin) and Q its 128-level quantization expanded back over P's non-empty bins."""
    histogram = histogram.astype(np.float64)
    total = histogram.sum()
    if total == 0:
        return HISTOGRAM_BINS - 1
    histogram /= total
    tail = np.cumsum(histogram[::-1])[::-1]  # tail[i] = sum(histogram[i:])
    best_bin, best_kl = HISTOGRAM_BINS - 1, np.inf
    for threshold in range(TARGET_BINS, HISTOGRAM_BINS):
        p = histogram[:threshold].copy()
        p[-1] += tail[threshold] if threshold < HISTOGRAM_BINS else 0.0
        edges = (np.arange(TARGET_BINS) * threshold) // TARGET_BINS
        merged = np.add.reduceat(histogram[:threshold], edges)
        nonzero = histogram[:threshold] > 0
        counts = np.add.reduceat(nonzero.astype(np.float64), edges)
        level = np.repeat(np.arange(TARGET_BINS), np.diff(np.append(edges, threshold)))
        q = np.where(nonzero, merged[level] / np.maximum(counts[level], 1), 0.0)
        mask = p > 0
        q_masked = np.maximum(q[mask], 1e-12)
        kl = float(np.sum(p[mask] * np.log(p[mask] / (q_masked / q_masked.sum() * p[mask].sum()))))
        if kl < best_kl:
            best_bin, best_kl = threshold, kl
    return best_bin


def collect_statistics(net_factory, model: NcnnModel, layers: list[Layer], tensors: list[np.ndarray],
                       progress=None) -> dict[str, ActivationStats]:
    """Run the FP32 model over ``tensors`` twice (absmax, then histograms) and gather the input statistics of
    ``layers``. ``net_factory()`` returns an ncnn.Net of the FP32 model."""
    import ncnn

    source = source_blobs(model)
    blobs = sorted({source.get(layer.bottoms[0], layer.bottoms[0]) for layer in layers})
    stats = {blob: ActivationStats() for blob in blobs}
    net = net_factory()
    input_name = model.inputs[0]
    for update in (ActivationStats.add_absmax, ActivationStats.add_histogram):
        for tensor in tensors:
            array = np.ascontiguousarray(tensor[0], np.float32)
            mat = ncnn.Mat(array)  # borrows ``array``: both live until the extractor is closed
            with net.create_extractor() as extractor:
                extractor.set_light_mode(False)  # keep intermediate blobs: we read many per image
                extractor.input(input_name, mat)
                for blob in blobs:
                    status, out = extractor.extract(blob)
                    if status != 0:
                        raise RuntimeError(f"ncnn failed to compute blob '{blob}' during calibration")
                    update(stats[blob], np.array(out))
            if progress:
                progress()
    return {layer.name: stats[source.get(layer.bottoms[0], layer.bottoms[0])] for layer in layers}


def calibration_table(layers: list[Layer], statistics: dict[str, ActivationStats], method: str) -> dict:
    """layer name -> (input scale, weight scales), ncnn2table's content."""
    table = {}
    for layer in layers:
        threshold = statistics[layer.name].threshold(method)
        table[layer.name] = (127.0 / threshold if threshold > 0 else 1.0, weight_scales(layer))
    return table


def table_text(table: dict) -> str:
    """ncnn2table's text format: ``name_param_0 s0 s1 ...`` per weight, ``name s`` per input blob."""
    lines = [f"{name}_param_0 " + " ".join(f"{s:g}" for s in weights) for name, (_, weights) in table.items()]
    lines += [f"{name} {scale:g}" for name, (scale, _) in table.items()]
    return "\n".join(lines) + "\n"


def quantize(model: NcnnModel, table: dict) -> None:
    """Turn every layer named in ``table`` into an ncnn INT8 layer, in place (what ncnn2int8 writes)."""
    for layer in model.layers:
        if layer.name not in table:
            continue
        input_scale, scales = table[layer.name]
        weight, _ = layer.weights[0]
        groups = scales.size
        scaled = weight.astype(np.float32).reshape(groups, -1) * scales[:, None]
        q = np.clip(np.trunc(scaled + np.copysign(0.5, scaled)), -127, 127)  # roundf, as ncnn's float2int8
        weights = [(q.astype(np.int8).reshape(-1), True)]
        if layer.int_param(5):
            weights.append(layer.weights[1])
        weights += [(scales.astype(np.float32), False), (np.array([input_scale], np.float32), False)]
        layer.weights = weights
        layer.params[8] = "2" if layer.type == "Convolution" else "1"
        assert [len(w) for w, _ in weights] == [n for n, _ in ncnn_format.weight_layout(layer)]
