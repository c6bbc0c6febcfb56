"""ncnn INT8 in Python: the shared recipe (quantization.py) written as ncnn INT8 layers, as ncnn2int8 writes them.

The pip ``ncnn`` package has neither ncnn2table nor ncnn2int8. Each ncnn convolution (pnnx's, from the same
PyTorch module as the ONNX graph the recipe was computed on) is matched to its ONNX Conv by its FP32 weights.
A quantized one gets the layer parameter ``8=`` (int8_scale_term: 2 for Convolution, per-channel; 1 for
ConvolutionDepthWise, per-group), the recipe's int8 weights with ncnn's int8 storage tag, then the float
(corrected) bias, weight scales and input scale in the order ncnn's ``load_model`` reads them; a float one keeps
float weights (the recipe's equalized ones). ``model.table`` is written in ncnn2table's format.
"""

from __future__ import annotations

import numpy as np

from .. import ncnn_format, quantization
from ..errors import ExportError
from ..ncnn_format import Layer, NcnnModel


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


def table_text(table: dict) -> str:
    """ncnn2table's text format: ``name_param_0 s0 s1 ...`` per weight, ``name s`` per input blob."""
    lines = [f"{name}_param_0 " + " ".join(f"{s:g}" for s in weights) for name, (_, weights) in table.items()]
    lines += [f"{name} {scale:g}" for name, (scale, _) in table.items()]
    return "\n".join(lines) + "\n"


def _key(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, np.float32).tobytes()


def write_recipe(model: NcnnModel, original, equalized, recipe) -> dict:
    """Rewrite the FP32 ncnn ``model`` (pnnx's, from the same PyTorch module as the ONNX graph ``original``) with
    the INT8 ``recipe`` (``quantization.calibrate`` of ``original``; ``equalized`` its rescaled FP32 graph):
    each ncnn convolution is matched to its ONNX Conv by its FP32 weights; quantized ones get the recipe's
    integer weights, weight scales, corrected bias and ``127 / T`` input scale (T the symmetric clip of its
    input), float ones the equalized float weights. ncnn's quirk stays here: 3x3 stride-1 Convolutions run
    int8 Winograd with 6-bit weights, so theirs are rounded again from the recipe's weights to 31 levels."""
    from onnx import numpy_helper

    def arrays(graph_model):
        inits = {i.name: i for i in graph_model.graph.initializer}
        return {c.name: [numpy_helper.to_array(inits[n]).astype(np.float32) for n in c.input[1:3]]
                for c in quantization.conv_nodes(graph_model)}

    by_weight = {_key(params[0]): name for name, params in arrays(original).items()}
    new_float = arrays(equalized)
    quantized = {c.node: c for c in recipe.convs}
    table, unmatched = {}, []
    for layer in model.convolutions():
        node = by_weight.get(_key(layer.weights[0][0]))
        if node is None:
            unmatched.append(layer.name)
            continue
        if node not in quantized:
            layer.weights[0] = (new_float[node][0].reshape(-1), layer.weights[0][1])
            if layer.int_param(5) and len(new_float[node]) > 1:
                layer.weights[1] = (new_float[node][1], layer.weights[1][1])
            continue
        conv = quantized[node]
        q, scales = conv.q.reshape(conv.q.shape[0], -1), conv.scales
        if _winograd_int8(layer):
            ncnn_scales = weight_scales(Layer(layer.type, layer.name, layer.bottoms, layer.tops, layer.params,
                                              [(conv.gridded_weight.reshape(-1), True)]))
            scaled = conv.gridded_weight.reshape(q.shape[0], -1) * ncnn_scales[:, None]
            q = quantization.round_to_int8(scaled)
        else:
            ncnn_scales = (1.0 / scales).astype(np.float32)  # ncnn: int8 = real * scale
        threshold = recipe.threshold(conv.input)
        input_scale = 127.0 / threshold if threshold > 0 else 1.0
        table[layer.name] = (input_scale, ncnn_scales)
        weights = [(q.astype(np.int8).reshape(-1), True)]
        if layer.int_param(5):
            weights.append((conv.bias.astype(np.float32), False))
        weights += [(ncnn_scales.astype(np.float32), False), (np.array([input_scale], np.float32), False)]
        layer.weights = weights
        layer.params[ncnn_format.INT8_SCALE_TERM] = "2" if layer.type == "Convolution" else "1"
        assert [len(w) for w, _ in weights] == [n for n, _ in ncnn_format.weight_layout(layer)]
    if unmatched:
        raise ExportError(f"ncnn INT8: no ONNX convolution has the FP32 weights of layer(s) {', '.join(unmatched)}")
    return table
