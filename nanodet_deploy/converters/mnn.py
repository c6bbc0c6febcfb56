"""ONNX -> MNN: FP32, FP16 weights, offline INT8 (calibrated, activations and weights) and weight-only INT8;
the manifest travels in the model's bizCode.

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

from ..errors import UsageError
from . import onnx as onnx_converter
from . import tools
from .calibration import check_keep_float

FEATURE_METHODS = {"minmax": "EMA", "ema": "EMA", "kl": "KL", "admm": "ADMM"}
# INT8 (mnnquant) by measured val-dev mAP at 416 (FP32 0.3703), 100 calib-train images:
#   feature_quantize_method KL: 0.0264, ADMM: 0.0 (outputs destroyed), EMA: 0.3439;
#   EMA with the stem (conv1 and the first stage-2 convs) kept in float: 0.3498 once — but MNN 3.6.1's EMA path
#   never reads skip_quant_op_names (only KL/ADMM do), so that list is recorded, not in effect; the spread is the
#   calibration set's (16..100 images: 0.3413..0.3599).
DEFAULT_FLOAT_PARTS = ("stem",)


def run_tool(tool: str, args: list[str], timeout: float | None = None) -> str:
    """``_tools.<tool>(argv)`` in a child process; its output, or ExportError with the output's tail."""
    code = f"import sys, _tools; _tools.{tool}(['{tool}'] + sys.argv[1:])"
    return tools.run_tool([sys.executable, "-c", code, *args], f"MNN {tool}", timeout)


def convert(module, processing, directory: Path, precision: str = "fp32", opset: int = onnx_converter.DEFAULT_OPSET,
            dynamic_batch: bool = False, calib_paths=(), calib_method: str = "minmax", progress=None,
            keep_float=DEFAULT_FLOAT_PARTS, weight_int8: bool = False):
    """The ``--to mnn`` target: ``model.mnn``. Returns (files, conversion, packages)."""
    import onnx

    intermediate = directory / "model.intermediate.onnx"
    conversion = onnx_converter.export_onnx(module, processing.input_size, intermediate, opset=opset,
                                            dynamic_batch=dynamic_batch)
    model = directory / "model.mnn"
    float_model = model if precision != "int8" else directory / "model.fp32.mnn"
    flags = ["--fp16"] if precision == "fp16" else ["--weightQuantBits", "8"] if weight_int8 else []
    run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", intermediate, "--MNNModel", float_model,
                            "--bizCode", "nanodet-deploy", *flags])
    conversion["mnn"] = "MNNConvert -f ONNX" + (" " + " ".join(flags) if flags else "")
    if weight_int8:
        conversion["weight_int8"] = ("weight-only INT8 (--weightQuantBits 8): smaller file, weights dequantized "
                                     "at load; activations and arithmetic stay float — not an activation-INT8 model")
    if precision == "int8":
        skip = _skip_names(onnx.load(str(intermediate)), keep_float)
        conversion.update(_quantize(float_model, model, processing, calib_paths, calib_method, skip, progress))
        conversion["keep_float"] = list(keep_float)
        float_model.unlink()
    intermediate.unlink()
    return {"model": model.name}, conversion, ("onnx", "onnxsim", "MNN")


def _skip_names(onnx_model, keep_float) -> list[str]:
    """MNN op names (= the ONNX output names) of the convs in the parts kept in float."""
    check_keep_float(keep_float, onnx_converter.FLOAT_PARTS)
    names = {name for part in keep_float for name in onnx_converter.FLOAT_PARTS[part](onnx_model)}
    return [n.output[0] for n in onnx_model.graph.node if n.name in names and n.op_type == "Conv"]


def _quantize(src: Path, dst: Path, processing, calib_paths, calib_method: str, skip: list[str], progress) -> dict:
    """mnnquant with calibration images written through the SHARED preprocessing: each image is warped to the
    input size exactly as at inference and stored losslessly, so MNN's own resize is an identity and only its
    (x - mean) * normal remains, with our mean and 1/std."""
    from ..images import read_image
    from ..processing import warp_matrix

    method = FEATURE_METHODS.get(calib_method.lower())
    if method is None:
        raise UsageError(f"MNN calibration methods: {', '.join(FEATURE_METHODS)} (got '{calib_method}')")
    advance = progress("calibration images", len(calib_paths)) if progress else None
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".calib.") as folder:
        for i, path in enumerate(calib_paths):
            image = read_image(path)
            matrix = warp_matrix((image.shape[1], image.shape[0]), processing.input_size, processing.keep_ratio)
            cv2.imwrite(f"{folder}/{i:05d}.png", cv2.warpPerspective(image, matrix, tuple(processing.input_size)))
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
            "weight_quantize_method": "MAX_ABS", "calibration_images": len(calib_paths), "skipped_ops": skip}


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Rewrite the model with the manifest as its bizCode (an MNN -> MNN conversion: outputs measured
    bit-identical for FP32, FP16 and INT8 models)."""
    tmp = path.with_name(f".{path.name}.biz")
    run_tool("mnnconvert", ["-f", "MNN", "--modelFile", path, "--MNNModel", tmp, "--bizCode", manifest_json])
    tmp.replace(path)


def embedded_manifest(path: Path) -> str | None:
    from ..runtimes.mnn import load_module

    return load_module(path, threads=1).get_info().get("bizCode")
