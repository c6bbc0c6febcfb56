"""MNN INT8 from our own calibration, written as MNN's compression parameters.

MNN's converter builds a fully INT8 convolution from a ``MNN.Compression.Pipeline`` protobuf
(``MNNConvert --compressionParamsFile``, the route of MNN's own compression toolkit): for every convolution
listed by its output tensor name it quantizes the float weights with the given per-output-channel scales and
stores the input and output activation ranges; the convolutions not listed stay float, and MNN's runtime casts
between the two. That gives what ``mnnquant`` cannot: convolutions really kept in float (its EMA path ignores
``skip_quant_op_names``), ranges from the SHARED preprocessing, and the range choice below.

Ranges are per tensor and asymmetric, ``real = (q - zero) * scale`` with ``q`` in [-127, 127] (MNN stores a
zero point; LeakyReLU outputs are mostly positive and a symmetric range would waste half the codes). MNN
quantizes a convolution's output BEFORE the activation that follows it, so the range of a tensor read only by
LeakyReLU is chosen for the error after the activation: errors below zero count ``slope**2`` as much.

Measured at 416 (val-dev, FP32 0.3703; 100 calib-train images; per-tensor ranges, before grouping):
  symmetric |x| mse ranges, head in float: 0.3185 -> asymmetric: 0.3425 -> activation-aware: 0.3505; the same
  quantization simulated in ONNX Runtime (QuantizeLinear/DequantizeLinear, no fusion): 0.3458, so MNN computes
  what the ranges say. With the stem in float too one file scored 0.3683 or 0.3557 depending on the process:
  see SHARING_OPS. With one range per sharing group (deterministic: 0.3593 in 9 evaluations over 3 processes,
  1 and 2 threads): stem+head in float 0.3593 (minmax 0.3567), head 0.3587, stem+whole head 0.3544, stem+stage 2
  +head 0.3551; per-channel MSE weight clipping 0.3589, weight-quantization bias correction 0.3586 (not used).
Also measured and not used, because val-dev mAP did not follow the error they remove: cross-layer equalization
of 59 conv pairs (distance-logit MSE 0.117 -> 0.060; mAP 0.3581 against 0.3606 on average over six calibration
subsets), floating the 12 / 15 / 20 / 30 convolutions that cost the most output error on the calibration images
(0.3633 / 0.3629 / 0.3596 / 0.3542), per-channel bias correction measured layer by layer (0.3551). The drop that
remains is two single-object val-dev classes (README, MNN).
"""

from __future__ import annotations

import struct

import numpy as np

HISTOGRAM_BINS = 2048
CANDIDATES = 200  # range ends tried on each side of zero
QMIN, QMAX = -127, 127
METHODS = ("mse", "minmax")


class SignedStats:
    """Signed statistics of one tensor over the calibration set: min/max (first pass), histogram (second)."""

    def __init__(self):
        self.low = 0.0
        self.high = 0.0
        self.histogram = np.zeros(HISTOGRAM_BINS, np.int64)

    def add_range(self, values: np.ndarray) -> None:
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))

    def add_histogram(self, values: np.ndarray) -> None:
        if self.high > self.low:
            index = ((values.ravel() - self.low) * (HISTOGRAM_BINS / (self.high - self.low))).astype(np.int64)
            self.histogram += np.bincount(np.clip(index, 0, HISTOGRAM_BINS - 1), minlength=HISTOGRAM_BINS)


def shared_range(members: list[tuple[SignedStats, float]], method: str = "mse") -> tuple[float, float]:
    """One [low, high] (always containing 0) for tensors that must share it; each member is (statistics, slope
    of the LeakyReLU that reads it, 1.0 if none). ``minmax``: the observed range. ``mse``: the range that
    minimises the summed expected squared error of f(x) - f(Q(x)) over the members, f the identity or the
    member's LeakyReLU: clipping error outside the range plus rounding error step**2 / 12 inside."""
    low = min(stats.low for stats, _ in members)
    high = max(stats.high for stats, _ in members)
    if method == "minmax" or high <= low:
        return low, high
    lows = np.linspace(low, 0.0, CANDIDATES) if low < 0 else np.zeros(1)
    highs = np.linspace(0.0, high, CANDIDATES)[1:] if high > 0 else np.full(1, 1e-8)
    step = (highs[None, :] - lows[:, None]) / (QMAX - QMIN)
    total = np.zeros((lows.size, highs.size))
    for stats, slope in members:
        if stats.high <= stats.low:
            continue
        width = (stats.high - stats.low) / HISTOGRAM_BINS
        centers = stats.low + (np.arange(HISTOGRAM_BINS) + 0.5) * width
        counts = stats.histogram.astype(np.float64)
        act = np.where(centers < 0, slope * centers, centers)
        clip_low = ((act[None, :] - (slope * lows)[:, None]) ** 2
                    * (centers[None, :] < lows[:, None]) * counts).sum(axis=1)
        clip_high = ((act[None, :] - highs[:, None]) ** 2 * (centers[None, :] > highs[:, None]) * counts).sum(axis=1)
        # rounding error inside [low, high], weighted by the activation's gain squared
        gain = np.concatenate([[0.0], np.cumsum(counts * np.where(centers < 0, slope, 1.0) ** 2)])
        inside = gain[np.searchsorted(centers, highs, side="right")][None, :] - \
            gain[np.searchsorted(centers, lows)][:, None]
        total += clip_low[:, None] + clip_high[None, :] + np.maximum(inside, 0.0) * step ** 2 / 12
    i, j = np.unravel_index(np.argmin(total), total.shape)
    return float(lows[i]), float(highs[j])


def scale_and_zero(low: float, high: float) -> tuple[float, int]:
    """MNN's asymmetric parameters for [low, high]: ``real = (q - zero) * scale``, q in [QMIN, QMAX]."""
    scale = max(high - low, 1e-8) / (QMAX - QMIN)
    return scale, int(round(QMIN - low / scale))


def quantized_convs(onnx_model, float_convs) -> list:
    """The Conv nodes to quantize: every Conv with a constant weight that is not kept in float."""
    weights = {i.name for i in onnx_model.graph.initializer}
    return [n for n in onnx_model.graph.node
            if n.op_type == "Conv" and n.name not in float_convs and n.input[1] in weights]


def collect_statistics(onnx_model, names: list[str], tensors: list[np.ndarray], progress=None,
                       threads: int | None = None) -> dict[str, SignedStats]:
    """Run the FP32 ONNX model over ``tensors`` twice (ranges, then histograms) with ONNX Runtime and gather the
    statistics of the intermediate tensors ``names``."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    stats = {n: SignedStats() for n in names}
    for update in (SignedStats.add_range, SignedStats.add_histogram):
        for tensor in tensors:
            for name, value in zip(names, session.run(names, {input_name: tensor})):
                update(stats[name], value)
            if progress:
                progress()
    return stats


def _activation_slopes(onnx_model) -> dict[str, float]:
    """Tensor -> slope of the LeakyRelu (0 for Relu) that is its only reader; absent for other tensors."""
    readers: dict[str, list] = {}
    for node in onnx_model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    slopes = {}
    for name, nodes in readers.items():
        found = set()
        for node in nodes:
            if node.op_type == "Relu":
                found.add(0.0)
            elif node.op_type == "LeakyRelu":
                alpha = [a.f for a in node.attribute if a.name == "alpha"]
                found.add(alpha[0] if alpha else 0.01)  # ONNX's default alpha
            else:
                found.add(None)
        if len(found) == 1 and None not in found:
            slopes[name] = found.pop()
    return slopes


# MNN's runtime hands a tensor's quantization on to the tensors it reaches through these ops (ReLU, Interp and
# the raster ops reshape / transpose / concat / slice), walking sets ordered by tensor address: if the tensors
# so connected carry different ranges, which one wins changes from run to run (measured: one INT8 file gave
# 0.3557 or 0.3683 val-dev mAP in different processes). One range per connected group makes the order moot.
SHARING_OPS = {"Relu", "LeakyRelu", "Reshape", "Transpose", "Concat", "Slice", "Split", "Resize", "Flatten",
               "Squeeze", "Unsqueeze", "Identity"}


def sharing_groups(onnx_model, names) -> dict[str, str]:
    """Tensor -> representative of the group of ``names`` tensors connected through SHARING_OPS."""
    parent: dict[str, str] = {}

    def root(name):
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for node in onnx_model.graph.node:
        if node.op_type in SHARING_OPS:
            data = node.input if node.op_type == "Concat" else node.input[:1]
            for name in [*data[1:], *node.output]:
                parent[root(name)] = root(data[0])
    return {name: root(name) for name in names}


def layer_parameters(onnx_model, convs, statistics: dict[str, SignedStats], method: str) -> list[dict]:
    """Per quantized conv: input / output (name, scale, zero) and per-output-channel weight scales. Tensors of
    one sharing group (the output of one conv, the activation after it, the input of the next ...) get one
    range, chosen over all of them."""
    from onnx import numpy_helper

    weights = {i.name: i for i in onnx_model.graph.initializer}
    slopes = _activation_slopes(onnx_model)
    group = sharing_groups(onnx_model, list(statistics))
    members: dict[str, list] = {}
    for name, stats in statistics.items():
        members.setdefault(group[name], []).append((stats, slopes.get(name, 1.0)))
    ranges = {root: scale_and_zero(*shared_range(stats, method)) for root, stats in members.items()}

    def params(name):
        return (name, *ranges[group[name]])

    layers = []
    for conv in convs:
        weight = numpy_helper.to_array(weights[conv.input[1]]).astype(np.float32)
        absmax = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1)
        layers.append({"input": params(conv.input[0]), "output": params(conv.output[0]),
                       "weight": (conv.input[1], np.where(absmax > 0, absmax / QMAX, 1.0))})
    return layers


# --- MNN_compression.proto (proto2, package MNN.Compression), the fields MNN's converter reads -------------
# Pipeline { 1 version: string; 2 algo: CompressionAlgo }
# CompressionAlgo { 1 type: enum (0 QUANTIZE); 2 quant_params: QuantizeParams }
# QuantizeParams { 1 round_mode: enum (1 ROUND_AWAY_FROM_ZERO); 4 layer: LayerQuantizeParams }
# LayerQuantizeParams { 1 input, 3 output: ActivationParams; 2 weight: WeightParams; 4 method: enum (0 QAT) }
# ActivationParams { 1 name; 2 bits; 3 scales: float; 4 zero_point; 5 clamp_min; 6 clamp_max }
# WeightParams { 1 name; 2 bits; 3 scales: float; 4 clamp_min; 5 clamp_max }

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32 values are encoded as 10-byte two's complement
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _floats(field: int, values) -> bytes:
    return b"".join(_varint(field << 3 | 5) + struct.pack("<f", float(v)) for v in values)


def _activation(name: str, scale: float, zero: int) -> bytes:
    return (_bytes(1, name.encode()) + _int(2, 8) + _floats(3, [scale]) + _int(4, zero)
            + _int(5, QMIN) + _int(6, QMAX))


def _weight(name: str, scales) -> bytes:
    return _bytes(1, name.encode()) + _int(2, 8) + _floats(3, scales) + _int(4, QMIN) + _int(5, QMAX)


def compression_params(layers: list[dict]) -> bytes:
    """The serialized ``MNN.Compression.Pipeline`` for ``layers`` (from ``layer_parameters``)."""
    quantize = _int(1, 1)
    for layer in layers:
        quantize += _bytes(4, _bytes(1, _activation(*layer["input"])) + _bytes(2, _weight(*layer["weight"]))
                           + _bytes(3, _activation(*layer["output"])) + _int(4, 0))
    return _bytes(1, b"0.0.0") + _bytes(2, _int(1, 0) + _bytes(2, quantize))
