"""INT8 through PT2E (torchao's ``prepare_pt2e`` / ``convert_pt2e`` on a ``torch.export`` graph), for the
targets whose toolchain quantizes that way: ExecuTorch (XNNPACKQuantizer) and LiteRT (litert_torch's
PT2EQuantizer). One step for both; each converter brings only its toolchain's quantizer.

The decisions are the shared recipe's (quantization.calibrate on our ONNX export of the same module), not the
toolchain's defaults:
- the same calibration images through the same preprocessing (``read_calibration``);
- the recipe's equalized weights, rounded to its INT8 grid with its corrected biases (``gridded_model``): both
  quantizers take per-channel symmetric weights by absmax / 127, so they find the recipe's integers;
- the recipe's float set (``--keep-float``, default by sensitivity) for a format that writes every conv output as
  INT8 (XNNPACK's qs8 convolutions do, as ONNX Runtime's QLinearConv);
- the head's last convolutions and ops (sigmoid scores and distance logits joined by ``cat``) always float: one
  INT8 scale over scores in 0..1 and logits in -32..7 leaves about 9 distinct score values (measured with
  litert-torch's and ExecuTorch's default quantizers: score cosine 0.82).
What the quantizers do not take from the recipe: its activation ranges. Their own observers (a histogram per
tensor) set the activation scales from the same calibration images. The recipe's ranges can be set (min/max
observers, their min and max overwritten at every quantized convolution's input and output after calibration),
but measured at 416 on val-dev that was worse on both: agreement ExecuTorch 0.824 -> 0.795, LiteRT 0.811 -> 0.737
(90 % intervals about ±0.04); score cosine 0.9888 -> 0.9881, 0.9824 -> 0.9830.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import numpy as np

from .. import quantization
from ..errors import ExportError
from . import onnx as onnx_converter
from .calibration import read_calibration, shared_recipe

# XNNPACK's INT8 convolution reads and writes INT8 (asymmetric activations, symmetric weights)
PLACEMENT = quantization.Placement(outputs=True, symmetric=False)
HEAD = "head"  # the module whose own forward joins scores and distance logits: never quantized
# The head's last convolutions (4 of 110) write class logits and distance logits in one tensor, which a quantized
# convolution writes on one INT8 grid (XNNPACK qs8): the distance logits' range (-32..7) would leave the class
# logits a step of about 0.15. Kept float with the cat after them (not measured apart from it).
ALWAYS_FLOAT = ("head",)


def recipe_module(module, processing, directory: Path, calib_paths, method, keep_float, progress=None):
    """(a copy of ``module`` carrying the recipe's equalized, INT8-gridded weights and corrected biases, the
    names of its Conv2d modules the recipe keeps in float, the calibration tensors, the conversion record)."""
    import onnx
    import torch

    from ..model.fold import fold_batchnorm

    tensors = read_calibration(calib_paths, processing, progress)
    module = fold_batchnorm(copy.deepcopy(module), torch.from_numpy(tensors[0]))  # ONNX names = parameter names
    with onnx_converter.intermediate_onnx(module, processing.input_size, directory) as (path, _):
        equalized, recipe, record = shared_recipe(onnx.load(str(path)), calib_paths, processing, PLACEMENT, method,
                                                  keep_float, progress, always_float=ALWAYS_FLOAT, tensors=tensors)
    float_modules = load_conv_weights(module, quantization.gridded_model(equalized, recipe), recipe.float_convs)
    return module, float_modules, tensors, record


def load_conv_weights(module, onnx_model, float_convs) -> list[str]:
    """Every Conv's weight and bias of ``onnx_model`` into ``module``'s parameters of the same name (the ONNX
    export of a module without BatchNorm keeps PyTorch's parameter names as initializer names); the module names
    of ``float_convs``."""
    import torch
    from onnx import numpy_helper

    initializers = {i.name: i for i in onnx_model.graph.initializer}
    parameters = dict(module.named_parameters())
    float_modules, loaded = [], 0
    for node in onnx_model.graph.node:
        if node.op_type != "Conv":
            continue
        names = [n for n in node.input[1:] if n]
        if not all(n in parameters and n in initializers for n in names):
            raise ExportError(f"INT8: the ONNX convolution {node.name} has no PyTorch parameter of its name "
                              f"({', '.join(names)}): cannot carry the recipe's weights back")
        with torch.no_grad():
            for name in names:
                parameters[name].copy_(torch.from_numpy(numpy_helper.to_array(initializers[name]).copy()))
        loaded += 1
        if node.name in float_convs:
            float_modules.append(names[0].rsplit(".", 1)[0])
    convs = sum(1 for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    if loaded != convs:
        raise ExportError(f"INT8: {loaded} ONNX convolutions for {convs} in the model")
    return float_modules


def quantized_graph(module, example, quantizer, tensors, progress=None, fold_quantize: bool = True):
    """``module`` exported, prepared with ``quantizer``, calibrated on ``tensors`` and converted: a graph module
    with quantize/dequantize pairs that the toolchain lowers to its INT8 kernels (``fold_quantize`` False keeps
    the weights' quantize nodes, as litert_torch reads them)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # torch.export's and torchao's deprecation notes, not the user's business
        prepared = prepare_pt2e(torch.export.export(module, example).module(), quantizer)
        advance = progress("INT8 observers (calibration images)", len(tensors)) if progress else None
        with torch.no_grad():
            for tensor in tensors:
                prepared(torch.from_numpy(np.ascontiguousarray(tensor, np.float32)))
                if advance:
                    advance()
        quantized = convert_pt2e(prepared, fold_quantize=fold_quantize)
    for part in quantized.modules():  # for inference (an exported graph module refuses .eval())
        part.training = False
    return quantized


def recipe_quantizer(quantizer_class, config, float_modules):
    """An instance of the toolchain's ``quantizer_class`` (XNNPACKQuantizer, litert_torch's PT2EQuantizer) with
    ``config`` everywhere except where the recipe keeps float: the ``float_modules`` and the head's own ops (the
    sigmoid / cat tail). Those nodes are marked as annotated-with-nothing before the toolchain annotates, because
    its filters do not reach every pattern: XNNPACK's ``cat`` annotator ignores the filter function (executorch
    1.5.1), and quantized the head's last cat of scores and distance logits on one grid (score cosine 0.78 on
    val-dev with nothing else quantized)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    float_prefixes = tuple(float_modules)

    def kept_float(node) -> bool:
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        owner = stack[-1][0] if stack else ""  # the innermost module's name, e.g. "head.gfl_cls.0"
        return owner == HEAD or owner in float_prefixes

    class RecipeQuantizer(quantizer_class):
        def annotate(self, model):
            for node in model.graph.nodes:
                if node.op == "call_function" and kept_float(node):
                    node.meta[ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
            return super().annotate(model)

    return RecipeQuantizer().set_global(config)


ANNOTATION_KEY = "quantization_annotation"  # where PT2E quantizers record (and look for) a node's annotation
