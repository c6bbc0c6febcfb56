"""PyTorch -> ONNX (the hub every other converter starts from), FP16 and INT8 variants, embedded manifest.

Exporter: the TorchScript-based ``torch.onnx.export(dynamo=False)`` at opset 11. Measured with torch 2.13 on
nanodet-plus-m_416: it exports in 1.1 s to 529 nodes (311 after onnxsim) with no extra dependency; the dynamo
exporter needs ``onnxscript``, takes 14.7 s and emits opset 18 (Split-18 / Resize-18), which older pnnx /
MNNConvert / OpenVINO front ends do not all read. Opset 11 is the conservative level they all accept.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

from .. import quantization
from ..quantization import CALIBRATION_METHODS, DEFAULT_FLOAT_PARTS, DEFAULT_METHOD, FLOAT_PARTS  # noqa: F401 (the recipe as it is)
from ..errors import ExportError, first_line
from .calibration import float_layers_summary, shared_recipe

DEFAULT_OPSET = 11
MANIFEST_KEY = "nanodet_deploy"


def export_onnx(module, input_size: tuple[int, int], path: Path, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False) -> dict:
    """Trace ``module`` (the deploy graph) to ``path``; simplify with onnxsim, check. Returns what happened."""
    import onnx
    import torch

    width, height = input_size
    dummy = torch.zeros(1, 3, height, width)
    axes = {"data": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic: the graph is static per size
        torch.onnx.export(module, (dummy,), str(path), input_names=["data"], output_names=["output"],
                          opset_version=opset, dynamic_axes=axes, dynamo=False, do_constant_folding=True)
    model = onnx.load(str(path))
    info = {"exporter": "torch.onnx.export(dynamo=False)", "opset": opset, "dynamic_batch": dynamic_batch,
            "nodes_traced": len(model.graph.node)}
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise RuntimeError("onnxsim could not validate the simplified model")
        model = simplified
        info["simplified"] = True
    except Exception as e:  # keep the traced model: it is correct, only larger
        info["simplified"] = False
        info["simplify_error"] = first_line(e)
    info["nodes"] = len(model.graph.node)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return info


def convert_fp16(src: Path, dst: Path) -> dict:
    """FP16 weights and compute, FP32 input and output (``keep_io_types``)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _sort_topologically(model.graph)  # the converter appends the input casts after their consumers
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {"fp16": "onnxruntime.transformers.float16, keep_io_types"}


def _sort_topologically(graph) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("ONNX graph has a cycle or an input no node produces")
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


# INT8: the shared recipe (quantization.py) written as QDQ ONNX. ONNX Runtime's INT8 convolution (QLinearConv)
# reads and writes INT8, so this placement quantizes convolution outputs too (conv inputs only would leave it
# running float convolutions on dequantized data: measured at 416, 2 threads, one run, FP32 46.4 ms, inputs
# and outputs 40.3 ms, inputs only 74.5 ms). onnxruntime.quantization.quantize_static given the recipe's ranges
# (TensorQuantOverrides) also quantizes the LeakyReLU, Concat and Add outputs (32.3 ms) but requantizing those
# costs fidelity: agreement 0.703 on val-dev against 0.80 for this placement.
PLACEMENT = quantization.Placement(outputs=True, symmetric=False)
# Why INT8 can run no faster than FP32 (bench and export say it): benchmarks/onnxruntime_ops.py, 416, Intel Xeon
# with AMX, node times: the 109 QLinearConvs 7.9 ms against 12.0 for the float convolutions, but the INT8 graph
# adds 57 Transposes (17 in FP32: +1.1 ms), 84 QuantizeLinear/DequantizeLinear (2.3 ms) and 13 more Splits.
INT8_COST = ("ONNX Runtime's int8 convolutions save about a third of the convolution time, and its INT8 graph adds "
             "it back around ShuffleNet's channel split and shuffle: layout Transposes and Quantize/Dequantize "
             "nodes (benchmarks/onnxruntime_ops.py)")


def quantize_int8(src: Path, dst: Path, processing, calib_paths, placement=PLACEMENT,
                  method: str = DEFAULT_METHOD, keep_float=DEFAULT_FLOAT_PARTS, progress=None) -> dict:
    """The shared recipe for the FP32 model at ``src`` on the calibration images, written to ``dst`` as QDQ ONNX
    with ``placement``: uint8 activations, int8 per-channel weights, int32 biases."""
    import onnx

    equalized, recipe, record = shared_recipe(onnx.load(str(src)), calib_paths, processing, placement, method,
                                              keep_float, progress)
    model = quantization.qdq_model(equalized, recipe, outputs=placement.outputs, symmetric=placement.symmetric)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {**record, "writer": f"QDQ ONNX: uint8 activations at {recipe.info['placement']}, int8 per-channel "
                                f"weights, int32 biases", "activations": "uint8"}


@contextlib.contextmanager
def intermediate_onnx(module, input_size, directory: Path, **options):
    """(path, conversion record) of the module's ONNX export as a temporary file in ``directory``, for a
    converter that starts from ONNX; removed afterwards, whatever happens."""
    path = directory / "model.intermediate.onnx"
    try:
        yield path, export_onnx(module, input_size, path, **options)
    finally:
        path.unlink(missing_ok=True)


def describe(conversion: dict) -> str:
    """One line on what the conversion made, for the export summary."""
    text = f"opset {conversion['opset']}, {conversion['nodes']} nodes"
    if not conversion.get("simplified", True):
        text += f" (onnxsim failed, kept the traced model: {conversion.get('simplify_error')})"
    return text + float_layers_summary(conversion)


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Store the manifest in the model's ``metadata_props`` so the .onnx describes itself."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != MANIFEST_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=MANIFEST_KEY, value=manifest_json)
    onnx.save(model, str(path))


def embedded_manifest(path: Path) -> str | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == MANIFEST_KEY), None)


def convert(module, processing, directory: Path, precision: str = "fp32", opset: int = DEFAULT_OPSET,
            dynamic_batch: bool = False, calib_paths=(), calib_method: str = DEFAULT_METHOD, progress=None,
            keep_float=DEFAULT_FLOAT_PARTS):
    """The ``--to onnxruntime`` target (alias ``onnx``): ``directory/model.onnx`` in ``precision``. Returns (files,
    conversion record)."""
    model = directory / "model.onnx"
    fp32 = model if precision == "fp32" else directory / "model.fp32.onnx"
    conversion = export_onnx(module, processing.input_size, fp32, opset=opset, dynamic_batch=dynamic_batch)
    if precision == "fp16":
        conversion.update(convert_fp16(fp32, model))
    elif precision == "int8":
        conversion.update(quantize_int8(fp32, model, processing, calib_paths, PLACEMENT, calib_method, keep_float,
                                        progress))
    if fp32 != model:
        fp32.unlink()
    return {"model": model.name}, conversion
