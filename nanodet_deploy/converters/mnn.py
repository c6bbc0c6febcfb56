"""ONNX -> MNN: FP32, FP16 weights, INT8 (calibrated, activations and weights) and weight-only INT8; the
manifest travels in the model's bizCode.

INT8 has two routes. The default (``mse`` / ``minmax``): our calibration over the shared preprocessing, written
as MNN compression parameters that MNN's converter turns into INT8 convolutions (mnn_int8.py), with the parts
kept in float really left in float. The other (``ema`` / ``kl`` / ``admm``): MNN's offline quantization tool
``mnnquant``, kept for comparison.

MNN's converter and quantizer are called as library functions (``_tools.mnnconvert`` / ``_tools.mnnquant``)
in a child process, never through MNN's ``mnnconvert`` / ``mnnquant`` wrapper scripts: those import a logger
that runs ``pip install`` at import time and uploads usage data with the machine id, and the ``mnnquant``
wrapper of MNN 3.6 calls ``_tools.mnnquant`` with the wrong arguments (it aborts). A child process also keeps
a converter crash from taking the exporting process down, and lets us capture its output and time it out.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import cv2

from .. import quantization
from ..quantization import DEFAULT_FLOAT_PARTS, DEFAULT_METHOD, FLOAT_PARTS  # noqa: F401 (the recipe as it is)
from . import mnn_int8
from . import onnx as onnx_converter
from . import tools
from .calibration import shared_recipe

MNNQUANT_METHODS = {"ema": "EMA", "kl": "KL", "admm": "ADMM"}
CALIBRATION_METHODS = (*quantization.CALIBRATION_METHODS, *MNNQUANT_METHODS)
# INT8 by measured val-dev mAP at 416 (FP32 0.3703), 100 calib-train images.
#   mnnquant feature_quantize_method KL: 0.0264, ADMM: 0.0 (outputs destroyed), EMA: 0.3439, and 0.3413..0.3599
#   over 16..100 images; MNN 3.6.1's EMA path never reads skip_quant_op_names (only KL/ADMM do), so nothing can
#   be kept in float that way.
#   Compression parameters (mnn_int8.py), activation-aware mse ranges shared per group: stem and head in float
#   0.3593 (103 of 110 convolutions INT8; minmax 0.3567), head only 0.3587, stem and the whole head 0.3544.
#   The shared recipe (quantization.py), written as compression parameters (mnn_int8.py): below (README, MNN).
PLACEMENT = quantization.Placement(outputs=True, symmetric=False)  # MNN's INT8 convolutions write INT8
# Why calibrated INT8 runs slower than FP32 on x86 (README, MNN per op: benchmarks/mnn_ops.py, 416, AMD EPYC
# with VNNI): the 61 int8 1x1 convolutions 9.77 ms against 8.42 float, int8 depthwise 3.78 against 1.97, and the
# 71 LeakyReLUs run in float, so 152 casts surround them (3.06 ms). The pip wheel (MNN 3.6.1) has no AVX-512 or
# VNNI code at all (objdump of _mnncengine: no zmm register, no vpdpbusd; its int8 GEMM is AVX2's vpmaddubsw),
# so its int8 kernels cannot use the CPU's int8 dot product. The calibrated model stays the default: it is what
# MNN's ARM int8 kernels (sdot/i8mm) run; --weight-int8 is as small and computes in float.
INT8_COST = ("the MNN wheel's x86 int8 kernels are AVX2 only (no VNNI, no AVX-512) and slower than its float ones, "
             "and MNN runs LeakyReLU in float, casting around every one (benchmarks/mnn_ops.py); --weight-int8 "
             "is as small and computes in float")
# Parts MNN's INT8 path cannot take, whatever the selection, measured at 416 on val-dev (FP32 0.3703): with only
# the stem conv float (the sensitivity's choice), score cos 0.876, mAP 0.2712; with the head's final convs float
# as well 0.874 / 0.2822; with the stem part (conv1 and the two stage-2 convs reading its max-pooled output) and
# the head float, 0.9895 / 0.3631, agreement 0.809.
ALWAYS_FLOAT = ("stem", "head")


def run_tool(tool: str, args: list[str], timeout: float | None = None) -> str:
    """``_tools.<tool>(argv)`` in a child process; its output, or ExportError with the output's tail."""
    code = f"import sys, _tools; _tools.{tool}(['{tool}'] + sys.argv[1:])"
    return tools.run_tool([sys.executable, "-c", code, *args], f"MNN {tool}", timeout)


def convert(module, processing, directory: Path, precision: str = "fp32", opset: int = onnx_converter.DEFAULT_OPSET,
            dynamic_batch: bool = False, calib_paths=(), calib_method: str = DEFAULT_METHOD, progress=None,
            keep_float=DEFAULT_FLOAT_PARTS):
    """The ``--to mnn`` target: ``model.mnn`` (precision "weight-int8": INT8 weights only). Returns (files, conversion)."""
    weight_int8 = precision == "weight-int8"
    model = directory / "model.mnn"
    with onnx_converter.intermediate_onnx(module, processing.input_size, directory, opset=opset,
                                          dynamic_batch=dynamic_batch) as (intermediate, conversion):
        if precision == "int8":
            conversion.update(_convert_int8(intermediate, model, processing, calib_paths, calib_method.lower(),
                                            keep_float, progress))
        else:
            flags = ["--fp16"] if precision == "fp16" else ["--weightQuantBits", "8"] if weight_int8 else []
            conversion["mnn"] = _mnnconvert(intermediate, model, flags)
    if weight_int8:
        conversion["weight_int8"] = ("weight-only INT8 (--weightQuantBits 8): smaller file, weights dequantized "
                                     "at load; activations and arithmetic stay float — not an activation-INT8 model")
    return {"model": model.name}, conversion


def _mnnconvert(onnx_path: Path, model: Path, flags=()) -> str:
    run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", onnx_path, "--MNNModel", model,
                            "--bizCode", "nanodet-deploy", *flags])
    return " ".join(["MNNConvert -f ONNX", *(f for f in flags if not isinstance(f, Path))])


def _convert_int8(onnx_path: Path, model: Path, processing, calib_paths, method: str, keep_float,
                  progress) -> dict:
    import onnx

    onnx_model = onnx.load(str(onnx_path))
    if method in MNNQUANT_METHODS:
        float_model = model.with_name("model.fp32.mnn")
        _mnnconvert(onnx_path, float_model)
        info = _quantize(float_model, model, processing, calib_paths, method, _skip_names(onnx_model, keep_float),
                         progress)
        float_model.unlink()
        return {**info, "keep_float": list(keep_float)}
    equalized, recipe, record = shared_recipe(onnx_model, calib_paths, processing, PLACEMENT, method, keep_float,
                                              progress, always_float=ALWAYS_FLOAT)
    onnx.save(quantization.gridded_model(equalized, recipe), str(onnx_path))  # what MNNConvert reads
    params = model.with_name("model.compression.pb")
    params.write_bytes(mnn_int8.compression_params(mnn_int8.layer_parameters(equalized, recipe)))
    info = {**record, "writer": "MNN compression parameters (activations and weights)",
            "activations": "int8 per tensor, asymmetric, one range per sharing group"}
    info["mnn"] = _mnnconvert(onnx_path, model, ["--compressionParamsFile", params])
    params.unlink()
    return info


def _skip_names(onnx_model, keep_float) -> list[str]:
    """MNN op names (= the ONNX output names) of the convs in the parts kept in float (mnnquant's routes)."""
    parts = () if quantization.float_choice(keep_float) == quantization.AUTO else keep_float
    names = {name for part in parts for name in FLOAT_PARTS[part](onnx_model)}
    return [n.output[0] for n in onnx_model.graph.node if n.name in names and n.op_type == "Conv"]


def _quantize(src: Path, dst: Path, processing, calib_paths, calib_method: str, skip: list[str], progress) -> dict:
    """mnnquant with calibration images written through the SHARED preprocessing: each image is warped to the
    input size exactly as at inference and stored losslessly, so MNN's own resize is an identity and only its
    (x - mean) * normal remains, with our mean and 1/std."""
    from ..images import read_image
    from ..processing import warp

    method = MNNQUANT_METHODS[calib_method]
    advance = progress("calibration images", len(calib_paths)) if progress else None
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".calib.") as folder:
        for i, path in enumerate(calib_paths):
            cv2.imwrite(f"{folder}/{i:05d}.png", warp(read_image(path), processing)[0])
            if advance:
                advance()
        config = {"format": "BGR", "mean": list(processing.mean), "normal": [1 / s for s in processing.std],
                  "width": processing.input_size[0], "height": processing.input_size[1], "path": folder + "/",
                  "used_image_num": len(calib_paths), "feature_quantize_method": method,
                  "weight_quantize_method": "MAX_ABS", "skip_quant_op_names": skip, "debug": False}
        config_path = Path(folder) / "quant.json"
        config_path.write_text(json.dumps(config))
        run_tool("mnnquant", [src, dst, config_path])
    dst.with_name(dst.name + ".json").unlink(missing_ok=True)  # mnnquant writes its config beside the model
    return {"int8": "mnnquant (offline, activations and weights)", "feature_quantize_method": method,
            "weight_quantize_method": "MAX_ABS", "calibration_images": len(calib_paths),
            "skipped_ops": skip if method != "EMA" else "none: MNN 3.6.1's EMA path ignores skip_quant_op_names"}


def describe(conversion: dict) -> str:
    text = onnx_converter.describe(conversion)
    if "weight_int8" in conversion:
        text += ", weight-only INT8: activations and arithmetic stay float — not an activation-INT8 model"
    return text


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Rewrite the model with the manifest as its bizCode (an MNN -> MNN conversion: outputs measured
    bit-identical for FP32, FP16 and INT8 models)."""
    tmp = path.with_name(f".{path.name}.biz")
    run_tool("mnnconvert", ["-f", "MNN", "--modelFile", path, "--MNNModel", tmp, "--bizCode", manifest_json])
    tmp.replace(path)


def embedded_manifest(path: Path) -> str | None:
    from ..runtimes.mnn import load_module

    return load_module(path, threads=1).get_info().get("bizCode")
