"""MNN INT8 from the shared recipe (quantization.py), written as MNN's compression parameters.

MNN's converter builds a fully INT8 convolution from a ``MNN.Compression.Pipeline`` protobuf
(``MNNConvert --compressionParamsFile``, the route of MNN's own compression toolkit): for every convolution
listed by its output tensor name it quantizes the float weights with the given per-output-channel scales and
stores the input and output activation ranges; the convolutions not listed stay float, and MNN's runtime casts
between the two. The float weights it reads are the recipe's, already on their INT8 grid
(``quantization.gridded_model``), so MNN's rounding gives back the recipe's integers.

MNN's quirks stay here. Its INT8 convolutions write INT8, so the recipe's placement quantizes convolution
outputs too (before the LeakyReLU that follows: the recipe weights those ranges for the error after it). Ranges
are asymmetric, ``real = (q - zero) * scale`` with q in [-127, 127]. And MNN hands a tensor's quantization on
through ReLU, Interp and the raster ops (SHARING_OPS), so tensors so connected get one range, chosen by the
recipe's error measure over all of them (``layer_parameters``).

Measured before the shared recipe (416, val-dev, FP32 0.3703; 100 calib-train images): per-tensor ranges, stem
and head float 0.3683 or 0.3557 depending on the process (see SHARING_OPS); one range per group 0.3593, the
same in 9 evaluations over 3 processes.
"""

from __future__ import annotations

import struct

from .. import quantization

QMIN, QMAX = -127, 127


def scale_and_zero(low: float, high: float) -> tuple[float, int]:
    """MNN's asymmetric parameters for [low, high]: ``real = (q - zero) * scale``, q in [QMIN, QMAX]."""
    scale = max(high - low, 1e-8) / (QMAX - QMIN)
    return scale, int(round(QMIN - low / scale))


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


def layer_parameters(onnx_model, recipe: quantization.Recipe) -> list[dict]:
    """Per quantized conv: input / output (name, scale, zero) and per-output-channel weight scales. Tensors of
    one sharing group (the output of one conv, the activation after it, the input of the next ...) get one
    range, chosen over all of them."""
    names = sorted({c.input for c in recipe.convs} | {c.output for c in recipe.convs})
    group = sharing_groups(onnx_model, names)
    members: dict[str, list] = {}
    for name in names:
        members.setdefault(group[name], []).append((recipe.statistics[name], recipe.slopes.get(name, 1.0)))
    ranges = {root: scale_and_zero(*quantization.asymmetric_range(stats, recipe.method))
              for root, stats in members.items()}

    def params(name):
        return (name, *ranges[group[name]])

    return [{"input": params(c.input), "output": params(c.output), "weight": (c.weight_name, c.scales)}
            for c in recipe.convs]


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
