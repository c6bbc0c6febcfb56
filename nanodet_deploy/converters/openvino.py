"""ONNX -> OpenVINO IR (FP32, FP16-compressed weights, NNCF INT8), manifest in the IR's rt_info.

From our ONNX, not from PyTorch: measured on nanodet-plus-m_416 with OpenVINO 2026.4, ``convert_model`` of the
ONNX takes 0.6 s and gives ShuffleChannels with 6 Reshape / 2 Transpose; of the PyTorch module 5.4 s with
36 Reshape / 17 Transpose and ShapeOf/Gather shape arithmetic, and 24.5 ms vs 17.1 ms per f32 inference.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from .. import quantization
from ..errors import UsageError
from ..processing import BGR8_NHWC
from ..quantization import DEFAULT_FLOAT_PARTS, DEFAULT_METHOD, FLOAT_PARTS  # noqa: F401 (the recipe as it is)
from . import onnx as onnx_converter
from .calibration import read_calibration

RT_INFO_KEY = "nanodet_deploy"
# INT8, default: the shared recipe (quantization.py) written as a QDQ ONNX model that OpenVINO reads as
# FakeQuantize + INT8 convolutions. OpenVINO's INT8 convolutions take a quantized input and write float, so the
# recipe quantizes convolution inputs only. Measured at 416, 2 threads, one interleaved run: FP32 13.69 ms,
# this QDQ model 10.51 ms, NNCF's 10.45 ms; fidelity against FP32 on val-dev below (README, OpenVINO).
# ``--calib-method nncf``: nncf.quantize (post-training, fast bias correction, PERFORMANCE preset), kept for
# comparison; its ignored scope by measured val-dev mAP with 100 calib-train images (FP32: 0.3703 at 416,
# 0.3400 at 320): nothing ignored 0.3658 / 0.3377; the head's final 1x1 convs 0.3628 / 0.3422; + stem conv1
# 0.3642 / -; whole head 0.3638 / -.
PLACEMENT = quantization.Placement(outputs=False, symmetric=False)
# Why INT8 gains less than the int8 kernels promise: benchmarks/openvino_ops.py, 416, Intel Xeon with AMX, layer
# times 9.63 ms INT8 against 10.79 FP32: the 1x1 convolutions 1.98 against 4.98 ms, but depthwise 1.44 against
# 1.26, activation quantization 0.85 against 0.13 and the stem 0.74 against 0.40; the channel shuffle, split and
# concat ~2.6 ms in both.
INT8_COST = ("OpenVINO's int8 1x1 convolutions are 2.5x faster than float, but its int8 depthwise convolutions, "
             "activation quantization and stem are slower, and ShuffleNet's channel shuffle costs the same in both "
             "(benchmarks/openvino_ops.py)")
NNCF = "nncf"
NNCF_IGNORED_PATTERNS = {"head": [r".*/head/gfl_cls\.\d+/.*"], "stem": [r".*/backbone/conv1/.*"]}
NNCF_FLOAT_PARTS = ("head",)
NNCF_PRESET = "PERFORMANCE"  # symmetric weights and activations: the preset with VNNI kernels everywhere
CALIBRATION_METHODS = (*quantization.CALIBRATION_METHODS, NNCF)


def convert(module, processing, directory: Path, precision: str = "fp32", opset: int = onnx_converter.DEFAULT_OPSET,
            dynamic_batch: bool = False, calib_paths=(), calib_method: str = DEFAULT_METHOD, progress=None,
            keep_float=DEFAULT_FLOAT_PARTS, u8_input: bool = False):
    """The ``--to openvino`` target: ``model.xml`` / ``model.bin``. Returns (files, conversion)."""
    import openvino as ov

    with onnx_converter.intermediate_onnx(module, processing.input_size, directory, opset=opset,
                                          dynamic_batch=dynamic_batch) as (intermediate, conversion):
        conversion["openvino"] = "openvino.convert_model(onnx)"
        if precision == "int8" and calib_method != NNCF:  # the recipe's QDQ model replaces the FP32 one
            conversion.update(onnx_converter.quantize_int8(intermediate, intermediate, processing, calib_paths,
                                                           PLACEMENT, calib_method, keep_float, progress))
        model = ov.convert_model(str(intermediate))
    if precision == "int8" and calib_method != NNCF:
        conversion["reshapes_folded"] = fold_dequantize_reshapes(model)
    if precision == "int8" and calib_method == NNCF:
        keep = NNCF_FLOAT_PARTS if quantization.float_choice(keep_float) == quantization.AUTO else tuple(keep_float)
        model, info = quantize_nncf(model, processing, calib_paths, keep, progress)
        conversion.update(info)
    if u8_input:
        model = normalising_input(model, processing)
        conversion["input_format"] = BGR8_NHWC
        conversion["u8_input"] = "PrePostProcessor: u8 NHWC in, convert to f32, mean, scale (in the graph)"
    # save_model compresses to FP16 by default: only --fp16 asks for it
    ov.save_model(model, str(directory / "model.xml"), compress_to_fp16=precision == "fp16")
    if precision == "fp16":
        conversion["fp16"] = "openvino.save_model(compress_to_fp16=True): FP16 weights, decompressed at load"
    return {"model": "model.xml", "weights": "model.bin"}, conversion


def fold_dequantize_reshapes(model) -> int:
    """Reshape the constants of every dequantization that feeds a Reshape, and drop the Reshape; returns how many.

    The QDQ model's DequantizeLinear gives int32 biases as [C] and depthwise weights as [C,1,k,k], so
    ``convert_model`` leaves Constant -> Convert -> Multiply(scale) -> Reshape([1,C,1,1] or [C,1,1,k,k]): 152 of
    the INT8 IR's 158 Reshapes at 416 (the FP32 IR has 6). The CPU plugin folds them at compile time, so they cost
    IR size and compile time, not inference (benchmarks/openvino_ops.py); with the reshape moved onto the int8 /
    int32 constant and the scale, the weights stay compressed and the plugin computes the same values."""
    import openvino.opset13 as ops

    folded = 0
    for reshape in model.get_ordered_ops():
        if reshape.get_type_name() != "Reshape":
            continue
        chain = dequantization_constants(reshape.input_value(0).get_node())
        if chain is None:
            continue
        quantized, zero_point, scale = chain
        shape, target = quantized.shape, tuple(reshape.get_output_shape(0))
        value = ops.convert(ops.constant(quantized.reshape(target)), "f32")
        if zero_point is not None:
            value = ops.subtract(value, ops.constant(broadcast_reshaped(zero_point, shape, target)))
        value = ops.multiply(value, ops.constant(broadcast_reshaped(scale, shape, target)))
        value.set_friendly_name(reshape.get_friendly_name())
        reshape.output(0).replace(value.output(0))
        folded += 1
    model.validate_nodes_and_infer_types()
    return folded


def dequantization_constants(node):
    """(quantized, zero point or None, scale) as numpy arrays when ``node`` is Multiply(Convert(Constant)
    [- Constant], Constant), else None."""
    def constant(output):
        node = output.get_node()
        return node.get_data() if node.get_type_name() == "Constant" else None

    if node.get_type_name() != "Multiply":
        return None
    value, scale = node.input_value(0), constant(node.input_value(1))
    zero_point = None
    if value.get_node().get_type_name() == "Subtract":
        zero_point = constant(value.get_node().input_value(1))
        if zero_point is None:
            return None
        value = value.get_node().input_value(0)
    if scale is None or value.get_node().get_type_name() != "Convert":
        return None
    quantized = constant(value.get_node().input_value(0))
    return None if quantized is None else (quantized, zero_point, scale)


def broadcast_reshaped(values, shape, target):
    """``values`` (broadcastable to ``shape``) as they line up with the ``target``-shaped tensor, kept to one
    entry along every axis where they do not vary: a per-channel scale stays per-channel."""
    import numpy as np

    full = np.broadcast_to(values, shape).reshape(target)
    for axis in range(full.ndim):
        first = full.take([0], axis=axis)
        if np.array_equal(full, np.broadcast_to(first, full.shape)):
            full = first
    return np.ascontiguousarray(full)


def normalising_input(model, processing):
    """The model with OpenVINO's PrePostProcessor in front: it takes the warped BGR image as u8 NHWC and does
    (x - mean) / std itself, so the Python side skips the float tensor. Measured, FP32 at 416 on val-dev against
    PyTorch: score max-abs 2.0e-6, distance logits 3.6e-5, agreement 1.0, mAP 0.3703 = PyTorch."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(list(processing.mean)).scale(list(processing.std))
    return ppp.build()


def quantize_nncf(model, processing, calib_paths, keep_float, progress):
    import nncf

    unknown = set(keep_float) - set(NNCF_IGNORED_PATTERNS)
    if unknown:
        raise UsageError(f"--calib-method nncf keeps in float only {', '.join(NNCF_IGNORED_PATTERNS)} "
                         f"(got {', '.join(sorted(unknown))})")
    tensors = read_calibration(calib_paths, processing, progress)
    patterns = [p for part in keep_float for p in NNCF_IGNORED_PATTERNS[part]]
    scope = {"ignored_scope": nncf.IgnoredScope(patterns=patterns)} if patterns else {}
    nncf_logger = logging.getLogger("nncf")
    level, nncf_logger.level = nncf_logger.level, logging.ERROR
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = nncf.quantize(model, nncf.Dataset(tensors), preset=getattr(nncf.QuantizationPreset, NNCF_PRESET),
                                  subset_size=len(tensors), **scope)
    finally:
        nncf_logger.level = level
    return model, {"int8": "nncf.quantize (post-training, fast bias correction)", "preset": NNCF_PRESET,
                   "calibration_method": NNCF, "calibration_images": len(tensors), "keep_float": list(keep_float),
                   "ignored_patterns": patterns}


def describe(conversion: dict) -> str:
    text = onnx_converter.describe(conversion)
    if conversion.get("ignored_patterns"):
        text += f", NNCF, kept in float: {', '.join(conversion['keep_float'])}"
    return text


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Store the manifest in the IR's rt_info (``model.get_rt_info("nanodet_deploy")``)."""
    import openvino as ov

    model = ov.Core().read_model(str(path))  # memory-maps the .bin: never write over it while mapped
    model.set_rt_info(manifest_json, RT_INFO_KEY)
    tmp = path.with_name(f".{path.stem}.rt_info.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)  # keeps weights that are FP16 already as they are
    del model
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    tmp.replace(path)


def embedded_manifest(path: Path) -> str | None:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    return model.get_rt_info(RT_INFO_KEY).astype(str) if model.has_rt_info(RT_INFO_KEY) else None
