"""PyTorch -> LiteRT (formerly TensorFlow Lite) flatbuffer, ``model.tflite``.

From the module, not from our ONNX: ``litert_torch.convert`` (torch.export -> StableHLO -> the LiteRT
converter), which keeps our NCHW float input and output and inserts the layout transposes itself. Measured on
nanodet-plus-m_416 (litert-torch 0.10.0, ai-edge-litert 2.3.0, torch 2.13.0, 2-core AMD EPYC): 21 s, max |error|
2.8e-5 against PyTorch on a random input; the interpreter runs it on its XNNPACK delegate.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

from ..errors import ExportError, first_line
from ..quantization import CALIBRATION_METHODS, DEFAULT_FLOAT_PARTS, DEFAULT_METHOD, FLOAT_PARTS  # noqa: F401 (the recipe as it is)
from . import pt2e
from .calibration import float_layers_summary

MODEL_FILE = "model.tflite"
# the converter's C++ (absl) logs one INFO line per model written; warnings and errors still show
QUIET_NATIVE_LOGS = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def convert(module, processing, directory: Path, precision: str = "fp32", calib_paths=(),
            calib_method: str = DEFAULT_METHOD, keep_float=DEFAULT_FLOAT_PARTS,
            progress=None) -> tuple[dict[str, str], dict]:
    """The ``--to litert`` target: ``model.tflite`` for a [1, 3, H, W] float input (INT8: the shared recipe's
    decisions through PT2E and litert_torch's quantizer, converters/pt2e.py). Returns (files, conversion)."""
    import torch

    litert_torch = _import_converter()
    width, height = processing.input_size
    example = (torch.zeros(1, 3, height, width),)
    conversion, options = {}, {}
    if precision == "int8":
        module, float_modules, tensors, conversion = pt2e.recipe_module(
            module, processing, directory, calib_paths, calib_method, keep_float, progress)
        quantizer = litert_quantizer(float_modules)
        module = pt2e.quantized_graph(module, example, quantizer, tensors, progress, fold_quantize=False)
        from litert_torch.quantize.quant_config import QuantConfig

        options["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
        conversion["writer"] = ("PT2E (torchao) with litert_torch's PT2EQuantizer: int8 activations at conv inputs "
                                "and outputs, int8 per-channel weights; the recipe's weights, biases and float set")
    steps = ("converting (torch.export, StableHLO, LiteRT)", "writing the flatbuffer")
    advance = progress("LiteRT: " + ", ".join(steps), len(steps)) if progress else (lambda: None)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # FutureWarnings of torch's pytree from inside the converter
            edge_model = litert_torch.convert(module if precision == "int8" else module.eval(), example, **options)
            advance()
            edge_model.export(str(directory / MODEL_FILE))
    except Exception as e:  # the converter names the op it stopped at
        raise ExportError(f"LiteRT could not convert the model: {first_line(e)}")
    if precision == "fp16":
        conversion = fp16_weights(directory / MODEL_FILE)
    advance()
    return {"model": MODEL_FILE}, {**conversion, "exporter": "litert_torch.convert", "batch": 1}


FP16_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def fp16_weights(path: Path) -> dict:
    """LiteRT's FP16 format, in place: every convolution's weights stored as float16 behind a DEQUANTIZE
    (ai_edge_quantizer's weight-only float casting). XNNPACK widens them to float32 when it loads the model and
    computes in float32. Measured at 416: 5.0 MB -> 2.7 MB, the same latency, and on the official weights
    (released in FP16) outputs bit-identical to FP32; a self-trained checkpoint's weights round to fp16."""
    from ai_edge_quantizer import qtyping, quantizer

    cast = quantizer.Quantizer(str(path))
    config = qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
        compute_precision=qtyping.ComputePrecision.FLOAT)
    for op in FP16_OPS:
        cast.update_quantization_recipe(regex=".*", operation_name=getattr(qtyping.TFLOperationName, op),
                                        algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING, op_config=config)
    try:
        result = cast.quantize(enable_progress_bar=False, enable_progress_report=False)  # tqdm bars, a summary
        path.write_bytes(result.quantized_model)
    except Exception as e:
        raise ExportError(f"LiteRT: ai_edge_quantizer could not store the weights in fp16: {first_line(e)}")
    return {"writer": "ai_edge_quantizer float casting: conv weights float16, computed in float32",
            "fp16_ops": list(FP16_OPS)}


def litert_quantizer(float_modules):
    """litert_torch's static INT8 PT2E quantizer (symmetric per-channel weights), minus what the recipe keeps in
    float."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return pt2e.recipe_quantizer(PT2EQuantizer, get_symmetric_quantization_config(is_per_channel=True,
                                                                                 is_dynamic=False), float_modules)


def _import_converter():
    """litert_torch, imported with its console progress off (we show ours) and its import-time messages (absl,
    oneDNN, torchao's CUDA kernels) off the console."""
    from ..runtimes.base import native_output_silenced
    from ..runtimes.executorch import IMPORT_WARNINGS

    for key, value in QUIET_NATIVE_LOGS.items():
        os.environ.setdefault(key, value)
    with native_output_silenced(2, IMPORT_WARNINGS):
        import litert_torch
    litert_torch._config.config.show_progress = False  # its own rich console on stdout
    return litert_torch


def describe(conversion: dict) -> str:
    return "LiteRT flatbuffer (litert_torch.convert), XNNPACK at run time" + float_layers_summary(conversion)


def embed_manifest(path: Path, manifest_json: str) -> None:
    """The manifest is the nanodet.json beside the flatbuffer."""


def embedded_manifest(path: Path) -> str | None:
    return None
