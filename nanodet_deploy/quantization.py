"""The INT8 recipe: calibrate once, round once, choose the float layers once — every backend writes this result.

``calibrate`` runs the FP32 ONNX graph (the hub every converter starts from) in ONNX Runtime over the
calibration tensors (the shared preprocessing). It first equalizes channel ranges (``equalize_depthwise`` for
conv -> depthwise pairs, then, where only conv inputs are quantized, ``equalize_regions`` for every tensor a
channel scale can be pushed through: the float function is unchanged), then decides, per convolution:

- the activation range of its input and of its output (per tensor): the range that minimises the expected
  squared error after quantization, measured on a 2048-bin histogram — clipping error outside plus rounding
  error step**2 / 12 inside, and where a LeakyReLU reads the tensor the error is the one after it (errors below
  zero count slope**2 as much). Asymmetric ``(low, high)`` for formats with a zero point, symmetric ``|x| <= T``
  for ncnn, both from the same histograms;
- per-output-channel symmetric INT8 weights ``q * scale``, ``scale = absmax / 127``, rounded to nearest, and
  the bias corrected for the mean error that rounding adds to the output (``bias -= (Wq - W) . E[x]``).
  Measured at 416 (relative squared error of scores / distance logits against FP32, 16 calibration images,
  conv inputs quantized, nothing float): weights alone 0.0097 / 0.0065 -> 0.0029 / 0.0015 with the correction;
  weights and activations 0.0180 / 0.0133 -> 0.0123 / 0.0090. A correction measured in the simulated INT8 model
  (each conv's input rounding and clipping included) added nothing more (0.0171 -> 0.0171 on other images) and
  is not used; correcting every conv for the whole error reaching it at once diverges (each compensates what
  upstream already fixed). Activations dominate what remains;
- which convolutions stay float: sensitivity-driven (``select_float_convs``), or the parts a user names.

Where a backend's INT8 kernels quantize (``Placement``: conv inputs only, or inputs and outputs) is the one
thing a writer tells the recipe; the sensitivity is measured with that placement.

Writers (``converters/*``) only translate: QDQ ONNX for ONNX Runtime and OpenVINO (``qdq_model``), ncnn's
int8 layers, MNN's compression parameters. Every writer receives the same integer weights: formats whose
converter rounds float weights itself get ``gridded_model`` (weights already on the INT8 grid, so absmax / 127
and rounding give back exactly our integers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

HISTOGRAM_BINS = 2048
CANDIDATES = 200   # range ends tried on each side of zero
QMAX = 127         # symmetric int8 weights and the symmetric activation grid: [-127, 127]
METHODS = ("mse", "minmax")
QDQ_OPSET = 13     # per-channel DequantizeLinear needs `axis` (opset 13)
DEFAULT_METHOD = "mse"


# ---------------------------------------------------------------- statistics

class TensorStats:
    """One tensor over the calibration set: min/max and per-channel mean (first pass), histogram (second)."""

    def __init__(self):
        self.low = 0.0
        self.high = 0.0
        self.channel_sum = None
        self.count = 0
        self.histogram = np.zeros(HISTOGRAM_BINS, np.int64)

    def add_range(self, values: np.ndarray) -> None:
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        if values.ndim == 4:  # [1, C, H, W]: the per-channel mean that bias correction needs
            sums = values.sum(axis=(0, 2, 3), dtype=np.float64)
            self.channel_sum = sums if self.channel_sum is None else self.channel_sum + sums
            self.count += values.shape[0] * values.shape[2] * values.shape[3]

    def add_histogram(self, values: np.ndarray) -> None:
        if self.high > self.low:
            index = ((values.ravel() - self.low) * (HISTOGRAM_BINS / (self.high - self.low))).astype(np.int64)
            self.histogram += np.bincount(np.clip(index, 0, HISTOGRAM_BINS - 1), minlength=HISTOGRAM_BINS)

    @property
    def channel_mean(self) -> np.ndarray | None:
        return None if self.channel_sum is None else self.channel_sum / max(self.count, 1)


def session(onnx_model, outputs=(), threads: int | None = None):
    """An ONNX Runtime session of ``onnx_model`` with the intermediate tensors ``outputs`` made graph outputs."""
    import onnx
    import onnxruntime as ort

    model = onnx_model
    if outputs:
        model = onnx.ModelProto()
        model.CopyFrom(onnx_model)
        known = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in outputs if n not in known)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def collect_statistics(onnx_model, names: list[str], tensors: list[np.ndarray], progress=None,
                       threads: int | None = None) -> dict[str, TensorStats]:
    """Statistics of the intermediate tensors ``names`` of the FP32 model over ``tensors``: two passes (ranges,
    then histograms over those ranges)."""
    runner = session(onnx_model, names, threads)
    input_name = runner.get_inputs()[0].name
    stats = {n: TensorStats() for n in names}
    for update in (TensorStats.add_range, TensorStats.add_histogram):
        for tensor in tensors:
            for name, value in zip(names, runner.run(names, {input_name: tensor})):
                update(stats[name], value)
            if progress:
                progress()
    return stats


# ---------------------------------------------------------------- ranges

def _range_errors(members: list[tuple[TensorStats, float]], lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Expected squared error of f(x) - f(Q(x)) summed over ``members`` (statistics, slope of the LeakyReLU that
    reads the tensor, 1.0 if none) for each range [lows[k], highs[k]] on a grid of 2 * QMAX steps."""
    step = (highs - lows) / (2 * QMAX)
    total = np.zeros(lows.size)
    for stats, slope in members:
        if stats.high <= stats.low:
            continue
        width = (stats.high - stats.low) / HISTOGRAM_BINS
        centers = stats.low + (np.arange(HISTOGRAM_BINS) + 0.5) * width
        counts = stats.histogram.astype(np.float64)
        act = np.where(centers < 0, slope * centers, centers)
        # clipping error: sum over bins outside of h * (f(c) - f(end))^2 = S2 - 2 f(end) S1 + f(end)^2 S0 with
        # prefix / suffix sums S_k of h * f(c)^k
        moments = [counts * act ** k for k in range(3)]
        prefix = [np.concatenate([[0.0], np.cumsum(m)]) for m in moments]
        below = np.searchsorted(centers, lows)                 # bins [0, below) lie under low
        above = np.searchsorted(centers, highs, side="right")  # bins [above, N) lie over high
        f_low = np.where(lows < 0, slope * lows, lows)
        clip_low = prefix[2][below] - 2 * f_low * prefix[1][below] + f_low ** 2 * prefix[0][below]
        tail = [p[-1] - p[above] for p in prefix]
        clip_high = tail[2] - 2 * highs * tail[1] + highs ** 2 * tail[0]
        gain = np.concatenate([[0.0], np.cumsum(counts * np.where(centers < 0, slope, 1.0) ** 2)])
        inside = np.maximum(gain[above] - gain[below], 0.0)
        total += clip_low + clip_high + inside * step ** 2 / 12
    return total


def asymmetric_range(members: list[tuple[TensorStats, float]], method: str = DEFAULT_METHOD) -> tuple[float, float]:
    """One [low, high] (always containing 0) for tensors that share it (one member for a plain tensor).
    ``minmax``: the observed range; ``mse``: the range of least expected error (``_range_errors``)."""
    low = min(stats.low for stats, _ in members)
    high = max(stats.high for stats, _ in members)
    if method == "minmax" or high <= low:
        return low, high
    lows = np.linspace(low, 0.0, CANDIDATES) if low < 0 else np.zeros(1)
    highs = np.linspace(0.0, high, CANDIDATES)[1:] if high > 0 else np.full(1, 1e-8)
    grid_lows, grid_highs = (a.ravel() for a in np.meshgrid(lows, highs, indexing="ij"))
    best = int(np.argmin(_range_errors(members, grid_lows, grid_highs)))
    return float(grid_lows[best]), float(grid_highs[best])


def symmetric_threshold(stats: TensorStats, method: str = DEFAULT_METHOD, slope: float = 1.0) -> float:
    """The clip ``T`` of a symmetric grid [-T, T] (ncnn's activations), by the same error as the ranges."""
    absmax = max(-stats.low, stats.high)
    if method == "minmax" or absmax <= 0 or stats.high <= stats.low:
        return absmax
    thresholds = np.linspace(0.0, absmax, CANDIDATES + 1)[1:]
    return float(thresholds[np.argmin(_range_errors([(stats, slope)], -thresholds, thresholds))])


# ---------------------------------------------------------------- the recipe

@dataclass
class ConvQuant:
    """One quantized convolution of the ONNX graph: its tensors and its INT8 weights."""

    node: str              # ONNX Conv node name
    weight_name: str       # initializer name (the PyTorch parameter, e.g. "backbone.conv1.0.weight")
    input: str             # input activation tensor
    output: str            # output tensor (before the LeakyReLU that follows)
    float_weight: np.ndarray
    q: np.ndarray          # int8 weights, the convolution's weight shape
    scales: np.ndarray     # per output channel: real weight = q * scale
    bias: np.ndarray       # float bias, corrected for the rounding of the weights
    group: int = 1

    @property
    def gridded_weight(self) -> np.ndarray:
        return (self.q.astype(np.float32) * self.scales.reshape(-1, *[1] * (self.q.ndim - 1))).astype(np.float32)


@dataclass
class Recipe:
    """What every INT8 writer receives."""

    convs: list[ConvQuant]                         # quantized, in graph order
    float_convs: list[str]                         # ONNX Conv node names kept in float
    ranges: dict[str, tuple[float, float]]         # asymmetric, per activation tensor
    statistics: dict[str, TensorStats]             # for writers that must merge ranges (MNN's sharing groups)
    slopes: dict[str, float]                       # tensor -> slope of the LeakyReLU reading it
    conv_order: list[str] = field(default_factory=list)  # every Conv node, quantized or not, in graph order
    method: str = DEFAULT_METHOD
    bias_correction: bool = True
    info: dict = field(default_factory=dict)       # sensitivity and selection, for the conversion record

    def threshold(self, tensor: str) -> float:
        """Symmetric |x| clip of ``tensor`` (ncnn's activations), by the same error measure as the ranges."""
        return symmetric_threshold(self.statistics[tensor], self.method, self.slopes.get(tensor, 1.0))

    def keeping_float(self, names) -> "Recipe":
        """The same recipe with the Conv nodes ``names`` kept in float as well."""
        names = set(names) | set(self.float_convs)
        return replace(self, convs=[c for c in self.convs if c.node not in names],
                       float_convs=[n for n in self.conv_order if n in names], info=dict(self.info))

    def summary(self) -> dict:
        return {"int8": "nanodet-deploy INT8 recipe (quantization.py)", "calibration_method": self.method,
                "weights": "int8 per output channel, symmetric, round to nearest"
                           + (", bias corrected" if self.bias_correction else ""),
                "int8_layers": len(self.convs), "float_layers": list(self.float_convs), **self.info}


def conv_nodes(onnx_model) -> list:
    """Every Conv with constant weights, in graph order."""
    weights = {i.name for i in onnx_model.graph.initializer}
    return [n for n in onnx_model.graph.node if n.op_type == "Conv" and n.input[1] in weights]


def activation_slopes(onnx_model) -> dict[str, float]:
    """Tensor -> slope of the LeakyRelu (0 for Relu) that is its only reader; absent for other tensors."""
    slopes = {}
    for name, nodes in _readers(onnx_model).items():
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


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel symmetric INT8: (q, scales) with weight ~= q * scale, round half away from zero."""
    absmax = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1)
    scales = np.where(absmax > 0, absmax / QMAX, 1.0).astype(np.float32)
    return round_to_int8(weight / scales.reshape(-1, *[1] * (weight.ndim - 1))), scales


def round_to_int8(scaled: np.ndarray) -> np.ndarray:
    """Round half away from zero (C's roundf, as ncnn's float2int8 and MNN's ROUND_AWAY_FROM_ZERO), clip to
    [-127, 127]."""
    return np.clip(np.trunc(scaled + np.copysign(0.5, scaled)), -QMAX, QMAX).astype(np.int8)


def corrected_bias(weight: np.ndarray, q: np.ndarray, scales: np.ndarray, bias: np.ndarray, group: int,
                   input_mean: np.ndarray | None) -> np.ndarray:
    """``bias - (Wq - W) . E[x]``: the mean output error of the rounded weights, from the mean of each input
    channel over the calibration set (padding ignored)."""
    if input_mean is None:
        return bias
    rounded = q.astype(np.float64) * scales.reshape(-1, *[1] * (q.ndim - 1))
    return (bias - _weighted(rounded, group, input_mean) + _weighted(weight, group, input_mean)).astype(np.float32)


def _attribute(node, name: str, default):
    return next((a.i for a in node.attribute if a.name == name), default)


def build_recipe(onnx_model, tensors: list[np.ndarray], float_convs=(), method: str = DEFAULT_METHOD,
                 bias_correction: bool = True, progress=None, statistics=None) -> Recipe:
    """The recipe for ``onnx_model`` (FP32) from the calibration ``tensors``; ``float_convs``: Conv node names
    kept in float. ``statistics`` from an earlier call may be passed to skip the calibration passes."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in onnx_model.graph.initializer}
    convs = conv_nodes(onnx_model)
    names = sorted({c.input[0] for c in convs} | {c.output[0] for c in convs})
    if statistics is None:
        statistics = collect_statistics(onnx_model, names, tensors, progress)
    slopes = activation_slopes(onnx_model)
    ranges = {n: asymmetric_range([(statistics[n], slopes.get(n, 1.0))], method) for n in names}
    recipe_convs = []
    for conv in convs:
        weight = numpy_helper.to_array(initializers[conv.input[1]]).astype(np.float32)
        bias = (numpy_helper.to_array(initializers[conv.input[2]]).astype(np.float32) if len(conv.input) > 2
                else np.zeros(weight.shape[0], np.float32))
        q, scales = quantize_weight(weight)
        group = _attribute(conv, "group", 1)
        if bias_correction:
            bias = corrected_bias(weight, q, scales, bias, group, statistics[conv.input[0]].channel_mean)
        recipe_convs.append(ConvQuant(conv.name, conv.input[1], conv.input[0], conv.output[0], weight, q, scales,
                                      bias, group))
    recipe = Recipe(recipe_convs, [], ranges, statistics, slopes, [c.name for c in convs], method,
                    bias_correction)
    return recipe.keeping_float(float_convs)


# ---------------------------------------------------------------- models from the recipe

def gridded_model(onnx_model, recipe: Recipe):
    """A copy of the FP32 model whose quantized convolutions hold ``q * scale`` as float weights and the
    corrected bias: a converter that quantizes weights per channel by absmax itself gets exactly our integers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    nodes = {n.name: n for n in model.graph.node}
    replaced = {}
    for conv in recipe.convs:
        node = nodes[conv.node]
        replaced[conv.weight_name] = conv.gridded_weight
        bias_name = node.input[2] if len(node.input) > 2 else None
        if bias_name is None:
            bias_name = f"{conv.weight_name}.bias_corrected"
            node.input.append(bias_name)
            model.graph.initializer.append(numpy_helper.from_array(conv.bias, bias_name))
        else:
            replaced[bias_name] = conv.bias
    for i, init in enumerate(model.graph.initializer):
        if init.name in replaced:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(replaced[init.name], init.name))
    return model


def uint8_params(low: float, high: float) -> tuple[float, int]:
    """ONNX's uint8 (scale, zero point) for [low, high] (low <= 0 <= high)."""
    scale = max(high - low, 1e-8) / 255.0
    return float(scale), int(np.clip(round(-low / scale), 0, 255))


def qdq_model(onnx_model, recipe: Recipe, outputs: bool = True, symmetric: bool = False):
    """The recipe as a QDQ ONNX model (opset 13): uint8 QuantizeLinear / DequantizeLinear on each quantized
    convolution's input and output, int8 per-channel weights and int32 biases behind DequantizeLinear — the
    pattern ONNX Runtime fuses into QLinearConv and OpenVINO reads as FakeQuantize + INT8 convolution."""
    import onnx
    from onnx import helper, numpy_helper, version_converter

    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    if model.opset_import[0].version < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    graph = model.graph
    nodes = {n.name: n for n in graph.node}
    new_inits, done = [], {}
    inserted: dict[int, list] = {}   # index of the node to insert before -> nodes

    def qdq_pair(tensor: str, stem: str, range_of: str) -> tuple[list, str]:
        if symmetric:
            scale, zero = recipe.threshold(range_of) / QMAX, np.array(0, np.int8)
        else:
            scale, zero = uint8_params(*recipe.ranges[range_of])
            zero = np.array(zero, np.uint8)
        new_inits.extend([numpy_helper.from_array(np.array(scale, np.float32), f"{stem}.scale"),
                          numpy_helper.from_array(zero, f"{stem}.zero")])
        return ([helper.make_node("QuantizeLinear", [tensor, f"{stem}.scale", f"{stem}.zero"], [f"{stem}.q"],
                                  name=f"{stem}.Q"),
                 helper.make_node("DequantizeLinear", [f"{stem}.q", f"{stem}.scale", f"{stem}.zero"], [f"{stem}.dq"],
                                  name=f"{stem}.DQ")], f"{stem}.dq")

    order = {n.name: i for i, n in enumerate(graph.node)}
    renamed_outputs = {}
    for conv in recipe.convs:
        node = nodes[conv.node]
        index = order[conv.node]
        tensor = node.input[0]
        if tensor in renamed_outputs:  # a quantized conv's output read directly: already quantized, one range
            done.setdefault(tensor, tensor)
        if tensor not in done:
            pair, dq = qdq_pair(tensor, f"{tensor}.in", tensor)
            inserted.setdefault(index, []).extend(pair)
            done[tensor] = dq
        node.input[0] = done[tensor]
        in_scale = recipe.threshold(conv.input) / QMAX if symmetric else uint8_params(*recipe.ranges[conv.input])[0]
        w = conv.weight_name
        new_inits.extend([numpy_helper.from_array(conv.q, f"{w}.q"),
                          numpy_helper.from_array(conv.scales.astype(np.float32), f"{w}.scale"),
                          numpy_helper.from_array(np.zeros(conv.scales.size, np.int8), f"{w}.zero")])
        bias_scale = (in_scale * conv.scales.astype(np.float64)).astype(np.float32)
        bias_q = np.clip(np.round(conv.bias / bias_scale), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
        new_inits.extend([numpy_helper.from_array(bias_q, f"{w}.bias.q"),
                          numpy_helper.from_array(bias_scale, f"{w}.bias.scale"),
                          numpy_helper.from_array(np.zeros(bias_q.size, np.int32), f"{w}.bias.zero")])
        inserted.setdefault(index, []).append(
            helper.make_node("DequantizeLinear", [f"{w}.q", f"{w}.scale", f"{w}.zero"], [f"{w}.dq"], axis=0,
                             name=f"{w}.DQ"))
        inserted[index].append(helper.make_node("DequantizeLinear", [f"{w}.bias.q", f"{w}.bias.scale",
                                                f"{w}.bias.zero"], [f"{w}.bias.dq"], axis=0, name=f"{w}.bias.DQ"))
        del node.input[1:]
        node.input.extend([f"{w}.dq", f"{w}.bias.dq"])
        if not outputs:
            continue
        output = node.output[0]
        node.output[0] = f"{output}.float"
        pair, dq = qdq_pair(f"{output}.float", f"{output}.out", output)
        renamed_outputs[output] = (pair, dq)
    # the output pair goes right after its conv; readers of the conv's output read the dequantized value
    rebuilt = []
    for i, node in enumerate(graph.node):
        rebuilt.extend(inserted.get(i, []))
        rebuilt.append(node)
        if node.op_type == "Conv" and node.output[0].endswith(".float") and node.output[0][:-6] in renamed_outputs:
            pair, dq = renamed_outputs[node.output[0][:-6]]
            pair[1].output[0] = node.output[0][:-6]   # the DQ produces the original name: readers unchanged
            rebuilt.extend(pair)
    del graph.node[:]
    graph.node.extend(rebuilt)
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


# ---------------------------------------------------------------- equalization

def _readers(onnx_model) -> dict[str, list]:
    readers: dict[str, list] = {}
    for node in onnx_model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def depthwise_pairs(onnx_model, into_depthwise: bool = True) -> list[tuple]:
    """(conv A, tensor, depthwise conv B): A's output, through at most one LeakyRelu / Relu, is read only by B,
    a depthwise convolution. Scaling channel i of A by 1 / s and of B by s leaves the function unchanged (the
    activations are positively homogeneous) and both convolutions' per-channel weight quantization too: only
    the per-tensor range of ``tensor`` changes."""
    readers = _readers(onnx_model)
    outputs = {o.name for o in onnx_model.graph.output}
    convs = {c.name: c for c in conv_nodes(onnx_model)}
    pairs = []
    for a in convs.values():
        tensor = a.output[0]
        chain = readers.get(tensor, [])
        if len(chain) == 1 and chain[0].op_type in ("LeakyRelu", "Relu"):
            tensor = chain[0].output[0]
            chain = readers.get(tensor, [])
        if len(chain) != 1 or chain[0].name not in convs or tensor in outputs or a.output[0] in outputs:
            continue
        b = chain[0]
        if into_depthwise and _depthwise(onnx_model, b):
            pairs.append((a, tensor, b))
        elif not into_depthwise and _depthwise(onnx_model, a) and tensor == a.output[0] and _attribute(b, "group", 1) == 1:
            pairs.append((a, tensor, b))
    return pairs


def _depthwise(onnx_model, conv) -> bool:
    weight = next(i for i in onnx_model.graph.initializer if i.name == conv.input[1])
    return _attribute(conv, "group", 1) > 1 and weight.dims[1] == 1


class ChannelRange:
    def __init__(self):
        self.absmax = None

    def add(self, values: np.ndarray) -> None:
        m = np.abs(values).max(axis=(0, 2, 3))
        self.absmax = m if self.absmax is None else np.maximum(self.absmax, m)


def channel_ranges(onnx_model, names: list[str], tensors: list[np.ndarray], progress=None) -> dict[str, ChannelRange]:
    """Per-channel |x| maxima of the intermediate tensors ``names`` of the model over ``tensors``."""
    runner = session(onnx_model, names)
    input_name = runner.get_inputs()[0].name
    ranges = {name: ChannelRange() for name in names}
    for tensor in tensors:
        for name, value in zip(names, runner.run(names, {input_name: tensor})):
            ranges[name].add(value)
        if progress:
            progress()
    return ranges


MIN_CHANNEL_SCALE = 1 / 64  # a near-empty channel is raised at most 64x
# Equalization, measured at 416 on 16 calib-train images (relative squared error of scores / distance logits,
# inputs+outputs placement, stem float): none 0.0236 / 0.0232; into depthwise convs (20 tensors) 0.0152 / 0.0163;
# then depthwise outputs into the next conv with the scale's square root (23 more) 0.0140 / 0.0156, with the full
# scale 0.0157 / 0.0162 (the next conv's per-row weight grid pays for it). FP32 outputs unchanged (1e-12).
EQUALIZE_INTO_CONV = 0.5


def equalize_depthwise(onnx_model, tensors: list[np.ndarray], progress=None, into_depthwise=True, alpha=1.0):
    """A copy of ``onnx_model`` in which every ``depthwise_pairs`` tensor has all channels at the range of its
    widest one (clamped to MIN_CHANNEL_SCALE): the float function is the same, the INT8 grid of the tensor is
    shared by channels of equal width. Returns (model, number of tensors equalized)."""
    import onnx
    from onnx import numpy_helper

    pairs = depthwise_pairs(onnx_model, into_depthwise)
    if not pairs:
        return onnx_model, 0
    ranges = channel_ranges(onnx_model, list(dict.fromkeys(t for _, t, _ in pairs)), tensors, progress)
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    inits = {i.name: i for i in model.graph.initializer}

    def update(name, fn):
        array = numpy_helper.to_array(inits[name]).astype(np.float32)
        inits[name].CopyFrom(numpy_helper.from_array(fn(array).astype(np.float32), name))

    for a, tensor, b in pairs:
        absmax = ranges[tensor].absmax
        if absmax.max() <= 0:
            continue
        s = np.clip(absmax / absmax.max(), MIN_CHANNEL_SCALE, 1.0) ** alpha
        update(a.input[1], lambda w: w / s.reshape(-1, 1, 1, 1))
        if len(a.input) > 2:
            update(a.input[2], lambda bias: bias / s)
        update(b.input[1], lambda w: w * s.reshape((-1, 1, 1, 1) if into_depthwise else (1, -1, 1, 1)))
    return model, len(pairs)


# Channel-wise operators a per-channel positive scale passes through unchanged (LeakyReLU and ReLU are positively
# homogeneous; max-pool and resize act on each channel alone).
CHANNELWISE = ("LeakyRelu", "Relu", "MaxPool", "Resize")
# Equalizing every other tensor whose channel scale can be pushed back into the convolutions that make it (through
# CHANNELWISE ops, Add and Concat) and forward into the convolutions that read it: 68 regions at 416, among them
# the stem's max-pool output (alone 32% of the inputs-only INT8 error, measured by quantizing one tensor at a time)
# and the Ghost-PAN block outputs. Simulated in ONNX Runtime, 200 fidelity images, agreement at IoU 0.9, all INT8 /
# with the sensitivity-chosen float convs: inputs placement 0.855 / 0.868 -> 0.877 / 0.895; ncnn's symmetric inputs
# 0.832 / 0.844 -> 0.851 / 0.875; inputs and outputs 0.654 / 0.779 -> 0.652 / 0.780 (its error is the pre-activation
# grid, which scaling cannot change). The real exports on the 600 fidelity images agree: OpenVINO 0.862 -> 0.881,
# ncnn 0.839 -> 0.861, ONNX Runtime 0.761 -> 0.763, MNN 0.776 -> 0.771 with its score cosine down (0.9909 ->
# 0.9869), so only placements that quantize conv inputs alone use it. Readers that are dense convolutions pay
# with their per-row weight grid, so such regions take the square root of the scale (EQUALIZE_INTO_CONV);
# regions only depthwise convolutions read take all of it.


class _NotScalable(Exception):
    pass


class _Graph:
    """Who makes and who reads each tensor, channel counts and float initializers of an ONNX model."""

    def __init__(self, onnx_model):
        from onnx import numpy_helper, shape_inference

        inferred = shape_inference.infer_shapes(onnx_model)
        self.channels = {}
        for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
            dims = info.type.tensor_type.shape.dim
            if len(dims) == 4:
                self.channels[info.name] = dims[1].dim_value
        self.readers = _readers(onnx_model)
        self.producer = {o: n for n in onnx_model.graph.node for o in n.output}
        self.outputs = {o.name for o in onnx_model.graph.output}
        self.weights = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}


def channel_region(graph: _Graph, tensor: str, scale: np.ndarray) -> tuple[list, dict]:
    """The weight edits that divide channel i of ``tensor`` by ``scale[i]`` and leave the model's function as it
    was: back into the convolutions that make it (their output rows), forward into the convolutions that read it
    (input columns, or rows of a depthwise one), through CHANNELWISE ops, Add (every input scaled alike) and
    Concat (each input its share). Returns (edits: (initializer, "rows" | "columns", factor), the scaled tensors);
    raises _NotScalable where the walk meets anything else (a graph input or output, Slice, Reshape, ...)."""
    edits, scaled = [], {}

    def conv_weight(node) -> tuple[str, bool]:
        name = node.input[1]
        if name not in graph.weights or any(len(graph.readers[i]) > 1 for i in node.input[1:]):
            raise _NotScalable(node.name)  # not a constant, or shared with another node
        shape, group = graph.weights[name].shape, _attribute(node, "group", 1)
        if group > 1 and not (shape[1] == 1 and group == shape[0]):
            raise _NotScalable(node.name)  # grouped but not depthwise
        return name, group > 1

    def visit(name: str, factor: np.ndarray, came_from) -> None:
        if name in scaled:
            if not np.array_equal(scaled[name], factor):
                raise _NotScalable(name)
            return
        if name in graph.outputs or name not in graph.producer:
            raise _NotScalable(name)
        scaled[name] = factor
        for reader in graph.readers.get(name, []):
            if reader is not came_from:
                forward(reader, name, factor)
        if graph.producer[name] is not came_from:
            backward(graph.producer[name], factor)

    def forward(reader, name: str, factor: np.ndarray) -> None:
        if reader.op_type == "Conv" and reader.input[0] == name:
            weight, depthwise = conv_weight(reader)
            edits.append((weight, "rows" if depthwise else "columns", factor))
        elif reader.op_type in CHANNELWISE and reader.input[0] == name:
            visit(reader.output[0], factor, reader)
        elif reader.op_type == "Add":
            for other in reader.input:
                if other != name:
                    visit(other, factor, reader)
            visit(reader.output[0], factor, reader)
        else:
            raise _NotScalable(reader.name)

    def backward(producer, factor: np.ndarray) -> None:
        if producer.op_type == "Conv":
            weight, _ = conv_weight(producer)
            edits.append((weight, "rows", 1.0 / factor))
            if len(producer.input) > 2:
                edits.append((producer.input[2], "rows", 1.0 / factor))
        elif producer.op_type in CHANNELWISE:
            visit(producer.input[0], factor, producer)
        elif producer.op_type == "Add":
            for name in producer.input:
                visit(name, factor, producer)
        elif producer.op_type == "Concat" and _attribute(producer, "axis", 0) == 1:
            start = 0
            for name in producer.input:
                count = graph.channels.get(name)
                if not count:
                    raise _NotScalable(name)
                visit(name, factor[start:start + count], producer)
                start += count
        else:
            raise _NotScalable(producer.name)

    visit(tensor, scale, None)
    return edits, scaled


def equalize_regions(onnx_model, tensors: list[np.ndarray], progress=None):
    """A copy of ``onnx_model`` in which every convolution input that ``channel_region`` can rescale (disjoint
    regions, first come first served) has its channels brought towards the range of its widest one, as
    ``equalize_depthwise`` does for single pairs. Returns (model, number of regions)."""
    import onnx
    from onnx import numpy_helper

    graph = _Graph(onnx_model)
    regions, claimed = [], set()
    for conv in conv_nodes(onnx_model):
        tensor = conv.input[0]
        if tensor in claimed or tensor not in graph.channels:
            continue
        try:
            edits, scaled = channel_region(graph, tensor, np.ones(graph.channels[tensor]))
        except _NotScalable:
            continue
        if claimed.isdisjoint(scaled):
            claimed.update(scaled)
            regions.append((tensor, any(kind == "columns" for _, kind, _ in edits)))
    if not regions:
        return onnx_model, 0
    ranges = channel_ranges(onnx_model, [tensor for tensor, _ in regions], tensors, progress)
    updated = {}
    for tensor, dense_reader in regions:
        absmax = ranges[tensor].absmax
        if absmax.max() <= 0:
            continue
        scale = np.clip(absmax / absmax.max(), MIN_CHANNEL_SCALE, 1.0) ** (EQUALIZE_INTO_CONV if dense_reader else 1.0)
        for name, kind, factor in channel_region(graph, tensor, scale)[0]:
            array = updated.get(name, graph.weights[name].astype(np.float64))
            shape = (-1, *[1] * (array.ndim - 1)) if kind == "rows" else (1, -1, *[1] * (array.ndim - 2))
            updated[name] = array * factor.reshape(shape)
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    for init in model.graph.initializer:
        if init.name in updated:
            init.CopyFrom(numpy_helper.from_array(updated[init.name].astype(np.float32), init.name))
    return model, len(regions)


# ---------------------------------------------------------------- parts and the float set

def _downstream(onnx_model, start: list, through_convs: bool) -> list[str]:
    """Names of the nodes fed (transitively) by the ``start`` nodes' outputs; with ``through_convs`` False the
    walk stops at (and includes) the next Conv on each path."""
    frontier, found = {o for n in start for o in n.output}, []
    for node in onnx_model.graph.node:  # nodes are topologically sorted
        if node in start or not any(i in frontier for i in node.input):
            continue
        found.append(node.name)
        if through_convs or node.op_type != "Conv":
            frontier.update(node.output)
    return found


def head_convs(onnx_model) -> list[str]:
    """The head's final convolutions: no other convolution follows them (they write the class scores and
    distance logits)."""
    convs = conv_nodes(onnx_model)
    names = {c.name for c in convs}
    return [c.name for c in convs if not names & set(_downstream(onnx_model, [c], through_convs=True))]


def stem_convs(onnx_model) -> list[str]:
    """The first convolution (it reads the image) and the convolutions its output reaches through the
    activation and max-pool (the first two of stage 2)."""
    inputs = {i.name for i in onnx_model.graph.input}
    first = [n for n in conv_nodes(onnx_model) if n.input[0] in inputs]
    convs = {c.name for c in conv_nodes(onnx_model)}
    return [n.name for n in first] + [n for n in _downstream(onnx_model, first, through_convs=False) if n in convs]


def depthwise_convs(onnx_model) -> list[str]:
    """Every depthwise convolution (one input channel per group)."""
    return [c.name for c in conv_nodes(onnx_model) if _depthwise(onnx_model, c)]


FLOAT_PARTS = {"stem": stem_convs, "head": head_convs, "depthwise": depthwise_convs}
AUTO = "auto"
# The recipe as a converter declares it (converters.Converter): a converter that takes the recipe as it is imports
# these; one that adds its own methods or parts says so beside its measurements.
CALIBRATION_METHODS = METHODS
DEFAULT_FLOAT_PARTS = (AUTO,)


def float_choice(keep_float):
    """``--keep-float`` as ``calibrate`` takes it: ("auto",) -> AUTO; part names stay a tuple."""
    return AUTO if tuple(keep_float) == (AUTO,) else tuple(keep_float)


# Selection of the float set, measured at 416 (calib-train, relative squared error of the class scores /
# distance logits against FP32 on 16 calibration images; inputs+outputs placement, all INT8): 0.060 / 0.050;
# the stem conv in float 0.024 / 0.023; then no other single conv removes more than 20% (diffuse error). Inputs
# only, all INT8: 0.011 / 0.009, no conv above 15%. A local proxy (per-channel noise-to-power of a conv's
# tensors) ranked the stem nowhere near the top (near-empty channels dominate it), so every conv is screened by
# measurement on a few images, and the best candidates are confirmed on more.
SCREEN_IMAGES = 4
SENSITIVITY_IMAGES = 16
SENSITIVITY_CANDIDATES = 4      # best screened convs confirmed on SENSITIVITY_IMAGES
TARGET_ERROR = 0.010            # relative squared error of scores and of distance logits on calibration images
MIN_GAIN = 0.15                 # a conv is floated only if it removes at least this share of the error
MAX_FLOAT = 4


def relative_error(runner, tensors, references, num_classes: int) -> np.ndarray:
    """Mean over images of ||a - b||^2 / ||b||^2 for the class scores and for the distance logits."""
    name = runner.get_inputs()[0].name
    error = np.zeros(2)
    for tensor, reference in zip(tensors, references):
        out = runner.run(None, {name: tensor})[0][0]
        for k, part in enumerate((slice(0, num_classes), slice(num_classes, None))):
            error[k] += ((out[:, part] - reference[:, part]) ** 2).sum() / max((reference[:, part] ** 2).sum(), 1e-30)
    return error / max(len(tensors), 1)


def select_float_convs(onnx_model, recipe: Recipe, tensors, num_classes: int, outputs: bool, symmetric: bool,
                       progress=None) -> Recipe:
    """Sensitivity-driven mixed precision: the fewest convolutions kept in float for the simulated INT8 model
    (``qdq_model`` in ONNX Runtime, with the writer's placement) to reach TARGET_ERROR on calibration images.
    Every conv is screened in float alone on SCREEN_IMAGES; the SENSITIVITY_CANDIDATES best are floated one at a
    time (measured on SENSITIVITY_IMAGES) while the error is above target and each removes at least MIN_GAIN of
    it, MAX_FLOAT at most."""
    images = tensors[:: max(1, len(tensors) // SENSITIVITY_IMAGES)][:SENSITIVITY_IMAGES]
    screen = images[:: max(1, len(images) // SCREEN_IMAGES)][:SCREEN_IMAGES]
    float_runner = session(onnx_model)
    references = [float_runner.run(None, {float_runner.get_inputs()[0].name: t})[0][0] for t in images]
    screen_refs = references[:: max(1, len(images) // SCREEN_IMAGES)][:SCREEN_IMAGES]

    def error_of(candidate: Recipe, on=images, refs=references) -> np.ndarray:
        value = relative_error(session(qdq_model(onnx_model, candidate, outputs=outputs, symmetric=symmetric)),
                               on, refs, num_classes)
        if progress:
            progress()
        return value

    screen_base = error_of(recipe, screen, screen_refs).sum()
    screened = sorted(((screen_base - error_of(recipe.keeping_float([c.node]), screen, screen_refs).sum(), c.node)
                       for c in recipe.convs), reverse=True)[:SENSITIVITY_CANDIDATES]
    base = error_of(recipe)
    chosen, error, gains = [], base, {}
    for _, node in screened:
        if error.max() <= TARGET_ERROR or len(chosen) >= MAX_FLOAT:
            break
        trial = error_of(recipe.keeping_float(chosen + [node]))
        gains[node] = round(float(error.sum() - trial.sum()), 5)
        if error.sum() - trial.sum() >= MIN_GAIN * error.sum():
            chosen, error = chosen + [node], trial
    selected = recipe.keeping_float(chosen)
    selected.info.update({"float_selection": "sensitivity", "sensitivity_images": len(images),
                          "error_all_int8": [round(float(e), 5) for e in base],
                          "error_selected": [round(float(e), 5) for e in error], "target_error": TARGET_ERROR,
                          "screened": {node: round(float(g), 5) for g, node in screened}, "confirmed_gain": gains})
    return selected


def sensitivity_runs(recipe: Recipe) -> int:
    """Simulated models ``select_float_convs`` measures at most (for progress bars)."""
    return 2 + len(recipe.convs) + SENSITIVITY_CANDIDATES


def macs_share(onnx_model, names) -> float:
    """Share of the model's convolution weights (a proxy for multiply-adds at one resolution) in ``names``."""
    sizes = {c.name: next(int(np.prod(i.dims)) for i in onnx_model.graph.initializer if i.name == c.input[1])
             for c in conv_nodes(onnx_model)}
    return sum(sizes[n] for n in names) / max(sum(sizes.values()), 1)


def _weighted(weight: np.ndarray, group: int, input_mean: np.ndarray) -> np.ndarray:
    """W . E[x] per output channel of a (grouped) convolution, from the per-input-channel means."""
    out_channels, per_group = weight.shape[0], weight.shape[1]
    summed = weight.astype(np.float64).reshape(out_channels, per_group, -1).sum(axis=2)
    channel = (np.arange(out_channels) // (out_channels // group))[:, None] * per_group + np.arange(per_group)
    return (summed * input_mean[channel]).sum(axis=1)


@dataclass(frozen=True)
class Placement:
    """Where a backend's INT8 kernels quantize: conv inputs only (ncnn, OpenVINO's INT8 convolutions with float
    output), or inputs and outputs (ONNX Runtime's QLinearConv and MNN's INT8 convolutions write INT8)."""

    outputs: bool
    symmetric: bool


def calibrate(onnx_model, tensors: list[np.ndarray], num_classes: int, placement: Placement,
              keep_float=AUTO, method: str = DEFAULT_METHOD, progress=None, always_float=()):
    """The whole recipe for ``onnx_model``: equalize (``equalize_depthwise``), collect statistics, ranges and
    INT8 weights, then the float set — ``keep_float`` "auto" (sensitivity) or part names — on top of the parts
    ``always_float`` that a backend cannot run in INT8. Returns (the equalized FP32 model every writer
    converts, the recipe)."""
    from onnx import version_converter

    if onnx_model.opset_import[0].version < QDQ_OPSET:  # once here, not in every simulated model
        onnx_model = version_converter.convert_version(onnx_model, QDQ_OPSET)
    passes = 2 if placement.outputs else 3
    advance = progress("equalizing", passes * len(tensors)) if progress else None
    model, first = equalize_depthwise(onnx_model, tensors, advance)
    model, second = equalize_depthwise(model, tensors, advance, into_depthwise=False, alpha=EQUALIZE_INTO_CONV)
    regions = 0
    if not placement.outputs:  # see CHANNELWISE: no gain where conv outputs are requantized, and MNN loses
        model, regions = equalize_regions(model, tensors, advance)
    convs = conv_nodes(model)
    names = sorted({c.input[0] for c in convs} | {c.output[0] for c in convs})
    advance = progress("calibrating (2 passes)", 2 * len(tensors)) if progress else None
    statistics = collect_statistics(model, names, tensors, advance)
    forced = [n for part in always_float for n in FLOAT_PARTS[part](model)]
    recipe = build_recipe(model, tensors, float_convs=forced, method=method, statistics=statistics)
    recipe.info["equalized"] = {"into_depthwise": first, "depthwise_into_conv": second, "regions": regions}
    if keep_float == AUTO:
        advance = progress("sensitivity", sensitivity_runs(recipe)) if progress else None
        recipe = select_float_convs(model, recipe, tensors, num_classes, placement.outputs, placement.symmetric,
                                    advance)
    else:
        recipe = recipe.keeping_float([n for part in keep_float for n in FLOAT_PARTS[part](model)])
        recipe.info["float_selection"] = list(keep_float)
    if always_float:
        recipe.info["always_float"] = list(always_float)
    recipe.info["float_weight_share"] = round(macs_share(model, recipe.float_convs), 4)
    recipe.info["placement"] = "conv inputs and outputs" if placement.outputs else "conv inputs"
    return model, recipe
