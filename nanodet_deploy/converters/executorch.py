"""PyTorch -> ExecuTorch program (``model.pte``), every op XNNPACK supports delegated to it.

From the module, not from our ONNX: ``torch.export`` -> ``to_edge_transform_and_lower(XnnpackPartitioner)`` ->
``to_executorch``. Measured on nanodet-plus-m_416 (executorch 1.5.1, torch 2.13.0, 2-core AMD EPYC): 29 s, a
4.9 MB program, max |error| 2.3e-5 against PyTorch on a random input. The partitioner does not take ``split``
(the ShuffleNet channel split): it is rewritten as slices first (``slices_for_splits``), so the whole graph is one
XNNPACK block.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

from ..errors import ExportError, first_line
from ..quantization import CALIBRATION_METHODS, DEFAULT_FLOAT_PARTS, DEFAULT_METHOD, FLOAT_PARTS  # noqa: F401 (the recipe as it is)
from . import pt2e
from .calibration import float_layers_summary

MODEL_FILE = "model.pte"
METHOD = "forward"


def convert(module, processing, directory: Path, precision: str = "fp32", calib_paths=(),
            calib_method: str = DEFAULT_METHOD, keep_float=DEFAULT_FLOAT_PARTS,
            progress=None) -> tuple[dict[str, str], dict]:
    """The ``--to executorch`` target: ``model.pte`` for a [1, 3, H, W] float input (INT8: the shared recipe's
    decisions through PT2E and XNNPACK's quantizer, converters/pt2e.py). Returns (files, conversion)."""
    import torch

    from ..runtimes.base import native_output_silenced
    from ..runtimes.executorch import IMPORT_WARNINGS

    with native_output_silenced(2, IMPORT_WARNINGS):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    width, height = processing.input_size
    example = (torch.zeros(1, 3, height, width),)
    conversion = {}
    if precision == "int8":
        module, float_modules, tensors, conversion = pt2e.recipe_module(
            module, processing, directory, calib_paths, calib_method, keep_float, progress)
        module = pt2e.quantized_graph(module, example, xnnpack_quantizer(float_modules), tensors, progress)
        conversion["writer"] = ("PT2E (torchao) with XNNPACKQuantizer: int8 activations at conv inputs and outputs, "
                                "int8 per-channel weights; the recipe's weights, biases and float set")
    if precision == "fp16":
        module = half_precision(module)
        conversion["writer"] = "the module in float16 (XNNPACK's fp16 kernels); float32 input and output"
    steps = ("torch.export", "lowering to XNNPACK", "writing the program")
    advance = progress("ExecuTorch: " + ", ".join(steps), len(steps)) if progress else (lambda: None)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            exported = torch.export.export(module.eval() if precision != "int8" else module, example)
            slices_for_splits(exported)
            advance()
            lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
            delegated = _delegate_calls(lowered.exported_program().graph_module)
            advance()
            program = lowered.to_executorch()
    except Exception as e:  # torch.export / the lowering name the op they stopped at
        raise ExportError(f"ExecuTorch could not convert the model: {first_line(e)}")
    (directory / MODEL_FILE).write_bytes(program.buffer)
    advance()
    return {"model": MODEL_FILE}, {**conversion, "exporter": "torch.export", "lowering": "to_edge_transform_and_lower",
                                   "partitioner": "XnnpackPartitioner", "xnnpack_blocks": delegated,
                                   "method": METHOD, "batch": 1}


def slices_for_splits(exported) -> int:
    """Every ``split`` / ``chunk`` of the exported graph (ShuffleNetV2's channel split, the head's scores /
    distances split) as one ``slice`` per piece, in place; returns how many were rewritten. XnnpackPartitioner
    takes slices but not split, which stayed on ExecuTorch's portable kernels between 15 XNNPACK blocks: as
    slices the program is one block, the same outputs (max |error| against PyTorch 2.31e-05 either way), 14.3
    instead of 15.9 ms per 416 image (median of 30 runs, 2-core Xeon)."""
    import operator

    import torch

    splits = (torch.ops.aten.split.Tensor, torch.ops.aten.split_with_sizes.default, torch.ops.aten.chunk.default)
    graph = exported.graph_module.graph
    rewritten = 0
    for node in list(graph.nodes):
        users = list(node.users)
        if node.op != "call_function" or node.target not in splits or not all(
                user.op == "call_function" and user.target is operator.getitem for user in users):
            continue
        pieces = node.meta["val"]
        dim = (node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)) % pieces[0].dim()
        starts = [0]
        for piece in pieces:
            starts.append(starts[-1] + int(piece.shape[dim]))
        for user in users:
            index = user.args[1]
            with graph.inserting_before(user):
                piece = graph.call_function(torch.ops.aten.slice.Tensor,
                                            (node.args[0], dim, starts[index], starts[index + 1]))
            piece.meta = dict(user.meta)
            user.replace_all_uses_with(piece)
            graph.erase_node(user)
        graph.erase_node(node)
        rewritten += 1
    exported.graph_module.recompile()
    return rewritten


def half_precision(module):
    """The model computed in float16 between a float32 input and output, so callers pass and get float32 (the
    two casts stay outside XNNPACK's blocks, on ExecuTorch's portable kernels)."""
    import copy

    import torch

    class HalfPrecision(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = copy.deepcopy(module).eval().half()

        def forward(self, x):
            return self.model(x.to(torch.float16)).to(torch.float32)

    return HalfPrecision()


def xnnpack_quantizer(float_modules):
    """XNNPACK's static INT8 quantizer (symmetric per-channel weights), minus what the recipe keeps in float."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)

    return pt2e.recipe_quantizer(XNNPACKQuantizer, get_symmetric_quantization_config(is_per_channel=True),
                                 float_modules)


def _delegate_calls(graph_module) -> int:
    """How many delegated blocks the lowered graph calls (ops XNNPACK does not take split the graph)."""
    return sum(1 for node in graph_module.graph.nodes
               if node.op == "call_function" and "executorch_call_delegate" in str(node.target))


def describe(conversion: dict) -> str:
    return (f"ExecuTorch program, {conversion.get('xnnpack_blocks', '?')} XNNPACK blocks (torch.export)"
            + float_layers_summary(conversion))


def embed_manifest(path: Path, manifest_json: str) -> None:
    """A .pte holds no free-form metadata: the manifest is the nanodet.json beside it."""


def embedded_manifest(path: Path) -> str | None:
    return None
