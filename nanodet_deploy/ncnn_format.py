"""ncnn's model files, read and written in Python: the text ``.param`` and the binary ``.bin``.

Both the converter (INT8 writer) and the runtime (which blobs are the model's inputs and outputs) need them, so
the format lives here once. Format as documented in ncnn's wiki ("param and model file structure"):

``.param``: the magic ``7767517``; ``layer_count blob_count``; then one line per layer
``Type name bottom_count top_count bottoms... tops... id=value ...`` where ``-23300-id=n,v1,...,vn`` is an
array-valued parameter ``id``.

``.bin``: each layer's weights in the order its ``load_model`` reads them. A "tagged" blob starts with a
32-bit tag saying how it is stored (0: float32, 0x01306B47: float16, 0x000D4B38: int8; padded to 4 bytes); an
"untagged" blob (biases, INT8 scales) is plain float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import NcnnFormatError  # noqa: F401  (raised here, importable from here)

MAGIC = "7767517"
TAG_FP32, TAG_FP16, TAG_INT8 = 0, 0x01306B47, 0x000D4B38
_TAGS = {TAG_FP32: np.float32, TAG_FP16: np.float16, TAG_INT8: np.int8}

# Layer types whose load_model reads nothing: the graph of a NanoDet-Plus pnnx conversion, and a few more
WEIGHTLESS = {"Input", "Pooling", "Split", "Concat", "ShuffleChannel", "Slice", "Reshape", "Permute", "Sigmoid",
              "Interp", "BinaryOp", "ReLU", "Eltwise", "Flatten", "Crop", "Softmax", "Noop", "Clip", "Swish",
              "HardSwish", "HardSigmoid", "Squeeze", "ExpandDims", "Dequantize", "Quantize", "Requantize"}
CONVOLUTIONS = ("Convolution", "ConvolutionDepthWise")
INT8_SCALE_TERM = 8  # a convolution's param key: non-zero when its weights are INT8 (how many scales: weight_layout)


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str] = field(default_factory=dict)   # key as written (-23310 for array 10) -> value text
    weights: list[tuple[np.ndarray, bool]] = field(default_factory=list)  # (array, tagged) in load_model order

    def int_param(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))

    @property
    def int8(self) -> bool:
        """Whether this (convolution) layer has INT8 weights."""
        return bool(self.int_param(INT8_SCALE_TERM))


@dataclass
class NcnnModel:
    layers: list[Layer]

    @property
    def inputs(self) -> list[str]:
        return [top for layer in self.layers if layer.type == "Input" for top in layer.tops]

    @property
    def outputs(self) -> list[str]:
        """Blobs some layer produces and no layer consumes, in the order they are produced."""
        consumed = {blob for layer in self.layers for blob in layer.bottoms}
        return [top for layer in self.layers for top in layer.tops if top not in consumed]

    def convolutions(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.type in CONVOLUTIONS]

    def rename_blob(self, old: str, new: str) -> None:
        for layer in self.layers:
            layer.bottoms = [new if b == old else b for b in layer.bottoms]
            layer.tops = [new if t == old else t for t in layer.tops]
            if layer.type == "Input" and layer.name == old:
                layer.name = new


def read(param_path: str | Path, bin_path: str | Path | None = None) -> NcnnModel:
    """The model of ``param_path`` (and its weights from ``bin_path`` when given)."""
    param_path = Path(param_path)
    lines = [line.split() for line in param_path.read_text().splitlines() if line.strip()]
    if not lines or lines[0] != [MAGIC] or len(lines) < 2 or len(lines[1]) != 2:
        raise NcnnFormatError(f"{param_path}: not an ncnn .param file (no {MAGIC} header)")
    layers = []
    for number, tokens in enumerate(lines[2:], start=3):
        try:
            n_bottoms, n_tops = int(tokens[2]), int(tokens[3])
            blobs = tokens[4:4 + n_bottoms + n_tops]
            params = dict(_param_item(token) for token in tokens[4 + n_bottoms + n_tops:])
        except (IndexError, ValueError):
            raise NcnnFormatError(f"{param_path}:{number}: malformed layer line") from None
        layers.append(Layer(tokens[0], tokens[1], blobs[:n_bottoms], blobs[n_bottoms:], params))
    if len(layers) != int(lines[1][0]):
        raise NcnnFormatError(f"{param_path}: header says {lines[1][0]} layers, file has {len(layers)}")
    model = NcnnModel(layers)
    if bin_path is not None:
        _read_weights(model, Path(bin_path))
    return model


def write(model: NcnnModel, param_path: str | Path, bin_path: str | Path) -> None:
    blobs = {blob for layer in model.layers for blob in layer.bottoms + layer.tops}
    lines = [MAGIC, f"{len(model.layers)} {len(blobs)}"]
    for layer in model.layers:
        params = " ".join(f"{key}={value}" for key, value in layer.params.items())
        lines.append(" ".join([f"{layer.type:<24}", f"{layer.name:<24}", str(len(layer.bottoms)),
                               str(len(layer.tops)), *layer.bottoms, *layer.tops, params]).rstrip())
    Path(param_path).write_text("\n".join(lines) + "\n")
    with open(bin_path, "wb") as f:
        for layer in model.layers:
            for array, tagged in layer.weights:
                f.write(_blob_bytes(array, tagged))


def _param_item(token: str) -> tuple[int, str]:
    key, value = token.split("=", 1)
    key = int(key)
    if key <= -23300:  # array -23300-id=count,values...: kept as written
        count, *values = value.split(",")
        if int(count) != len(values):
            raise ValueError(token)
    return key, value


def _blob_bytes(array: np.ndarray, tagged: bool) -> bytes:
    if not tagged:
        return np.ascontiguousarray(array, np.float32).tobytes()
    tag = {np.dtype(v): k for k, v in _TAGS.items()}[array.dtype]
    data = np.uint32(tag).tobytes() + np.ascontiguousarray(array).tobytes()
    return data + b"\0" * (-len(data) % 4)


def weight_layout(layer: Layer) -> list[tuple[int, bool]]:
    """(element count, tagged) of each blob ``layer``'s load_model reads, after ncnn's convolution layers."""
    if layer.type in WEIGHTLESS:
        return []
    if layer.type not in CONVOLUTIONS:
        raise NcnnFormatError(f"layer {layer.name}: type {layer.type} is not supported by nanodet-deploy's "
                              f"ncnn reader")
    num_output, weight_size = layer.int_param(0), layer.int_param(6)
    layout = [(weight_size, True)]
    if layer.int_param(5):
        layout.append((num_output, False))
    int8_scale_term = layer.int_param(INT8_SCALE_TERM)
    if int8_scale_term:
        per_channel = num_output if layer.type == "Convolution" else (
            layer.int_param(7, 1) if int8_scale_term in (1, 101) else 1)
        layout += [(per_channel, False), (1, False)]
        if int8_scale_term > 100:
            layout.append((1, False))
    return layout


def _read_weights(model: NcnnModel, bin_path: Path) -> None:
    data = bin_path.read_bytes()
    offset = 0
    for layer in model.layers:
        layer.weights = []
        for count, tagged in weight_layout(layer):
            dtype = np.float32
            if tagged:
                if offset + 4 > len(data):
                    raise NcnnFormatError(f"{bin_path}: ends inside layer {layer.name}'s weights")
                tag = int(np.frombuffer(data, np.uint32, 1, offset)[0])
                if tag not in _TAGS:
                    raise NcnnFormatError(f"{bin_path}: layer {layer.name}: unknown weight storage tag {tag:#x}")
                dtype, offset = _TAGS[tag], offset + 4
            size = count * np.dtype(dtype).itemsize
            if offset + size > len(data):
                raise NcnnFormatError(f"{bin_path}: ends inside layer {layer.name}'s weights")
            layer.weights.append((np.frombuffer(data, dtype, count, offset).copy(), tagged))
            offset += size + (-size % 4 if tagged else 0)
    if offset != len(data):
        raise NcnnFormatError(f"{bin_path}: {len(data) - offset} bytes left after the last layer's weights "
                              f"(does it belong to this .param?)")
