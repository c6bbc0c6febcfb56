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

from ..errors import ExportError, UsageError
from .calibration import check_keep_float

DEFAULT_OPSET = 11
MANIFEST_KEY = "nanodet_deploy"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "minmax"  # over a moving average of per-image ranges (README: 0.3609 at 416 with the stem and head float)
QDQ_MIN_OPSET = 13


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
        info["simplify_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
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


def _downstream(model, start: list, through_convs: bool) -> list[str]:
    """Names of the nodes fed (transitively) by the ``start`` nodes' outputs; with ``through_convs`` False the
    walk stops at (and includes) the next Conv on each path."""
    frontier, found = {o for n in start for o in n.output}, []
    for node in model.graph.node:  # nodes are topologically sorted
        if node in start or not any(i in frontier for i in node.input):
            continue
        found.append(node.name)
        if through_convs or node.op_type != "Conv":
            frontier.update(node.output)
    return found


def head_output_nodes(model) -> list[str]:
    """The head's final 1x1 convs (``head.gfl_cls.*``) and every node after them: the split / sigmoid / concat /
    reshape tail that joins scores (0..1) and distance logits (about +-10) into one tensor."""
    convs = [n for n in model.graph.node
             if n.op_type == "Conv" and any(i.startswith("head.gfl_cls.") for i in n.input)]
    return [n.name for n in convs] + _downstream(model, convs, through_convs=True)


def stem_nodes(model) -> list[str]:
    """The first conv and everything its output reaches up to the next convs (activation, max-pool and the
    first convs of stage 2), which would otherwise quantize the same tensor again."""
    inputs = {i.name for i in model.graph.input}
    first = [n for n in model.graph.node if n.op_type == "Conv" and n.input[0] in inputs]
    return [n.name for n in first] + _downstream(model, first, through_convs=False)


# Parts kept in float in INT8 models, chosen by measured val-dev mAP (FP32 0.3703 at 416 / 0.3400 at 320;
# 100 calibration images, minmax with moving average). Quantizing everything: 0.2900 at 416. Keeping the head
# tail in float: 0.3504 / 0.3310. Quantizing one part at a time showed conv1 alone causes most of the error
# (its BN-folded output spans [-0.29, 0.41] with many near-empty channels under one per-tensor scale); keeping
# the stem too: 0.3609 / 0.3305. Keeping the whole head instead of its tail: 0.3601 / 0.3312.
FLOAT_PARTS = {"stem": stem_nodes, "head": head_output_nodes}
DEFAULT_FLOAT_PARTS = ("stem", "head")


def quantize_int8(src: Path, dst: Path, tensors, method: str = "minmax",
                  keep_float=DEFAULT_FLOAT_PARTS, per_channel: bool = True) -> dict:
    """Static QDQ INT8 (``onnxruntime.quantization``): U8 activations, per-channel S8 weights, calibrated on
    ``tensors`` (an iterable of input tensors from the shared preprocessing)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    if method not in CALIBRATION_METHODS:
        raise UsageError(f"ONNX Runtime calibration methods: {', '.join(CALIBRATION_METHODS)} (got '{method}')")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter({"data": t} for t in tensors)

        def get_next(self):
            return next(self.batches, None)

    model = onnx.load(str(src))
    if model.opset_import[0].version < QDQ_MIN_OPSET:  # per-channel DequantizeLinear needs `axis` (opset 13)
        from onnx import version_converter

        model = version_converter.convert_version(model, QDQ_MIN_OPSET)
        src = dst.with_name(dst.stem + f".opset{QDQ_MIN_OPSET}.onnx")
        onnx.save(model, str(src))
    check_keep_float(keep_float, FLOAT_PARTS)
    excluded = [name for part in keep_float for name in FLOAT_PARTS[part](model)]
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    # minmax over a moving average of per-image ranges: at 416, 0.3504 mAP against 0.3341 for the global
    # min/max, as good as percentile (0.3497) at an eighth of the calibration time (11 s against 98 s)
    extra = {"CalibMovingAverage": True} if method == "minmax" else {}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calibrate, nodes_to_exclude=excluded, extra_options=extra)
    if src.name.endswith(f".opset{QDQ_MIN_OPSET}.onnx"):
        src.unlink()
    return {"int8": "onnxruntime.quantization.quantize_static QDQ", "calibration_method": method,
            "calibration_options": extra, "per_channel": per_channel, "activations": "uint8", "weights": "int8",
            "keep_float": list(keep_float), "excluded_nodes": excluded}


def describe(conversion: dict) -> str:
    """One line on what the conversion made, for the export summary."""
    text = f"opset {conversion['opset']}, {conversion['nodes']} nodes"
    if not conversion.get("simplified", True):
        text += f" (onnxsim failed, kept the traced model: {conversion.get('simplify_error')})"
    if conversion.get("excluded_nodes"):
        text += f", kept in float: {', '.join(conversion['keep_float'])} ({len(conversion['excluded_nodes'])} nodes)"
    return text


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
    """The ``--to onnx`` target: ``directory/model.onnx`` in ``precision``. Returns (files, conversion
    options, packages whose versions the manifest records)."""
    from .calibration import calibration_tensors

    model = directory / "model.onnx"
    fp32 = model if precision == "fp32" else directory / "model.fp32.onnx"
    conversion = export_onnx(module, processing.input_size, fp32, opset=opset, dynamic_batch=dynamic_batch)
    if precision == "fp16":
        conversion.update(convert_fp16(fp32, model))
    elif precision == "int8":
        advance = progress("calibrating", len(calib_paths)) if progress else None
        conversion.update(quantize_int8(fp32, model, calibration_tensors(calib_paths, processing, advance),
                                        method=calib_method, keep_float=keep_float))
        conversion["calibration_images"] = len(calib_paths)
    if fp32 != model:
        fp32.unlink()
    return {"model": model.name}, conversion, ("onnx", "onnxsim", "onnxruntime")
