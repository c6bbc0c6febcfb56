"""PyTorch -> ncnn with pnnx (TorchScript of the deploy graph -> ``pnnx`` -> .param / .bin): FP32, FP16
weights, and INT8 by our own table + writer (``converters.ncnn_int8``).

pnnx rather than onnx2ncnn: onnx2ncnn is deprecated, and pnnx reads the traced graph directly (its ncnn output
for NanoDet-Plus: 214 layers, ShuffleChannel / Slice / Interp fused, one output blob). pnnx writes many files
next to its output (``*.pnnx.*``, ``*_pnnx.py``, ``*_ncnn.py``, an ONNX); it runs in a temporary folder with every
output path given, and only the ncnn pair is kept. Blobs are renamed to ``data`` / ``output`` as in our other
formats; the output keeps our single [N, C + 4*(reg_max+1)] layout.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from .. import ncnn_format
from .. import quantization
from ..quantization import CALIBRATION_METHODS, DEFAULT_FLOAT_PARTS, DEFAULT_METHOD, FLOAT_PARTS  # noqa: F401 (the recipe as it is)
from . import ncnn_int8
from .calibration import float_layers_summary, shared_recipe
from .tools import run_tool

# INT8: the shared recipe (quantization.py). ncnn's INT8 convolutions quantize their input (symmetric, one scale
# per blob) and write float, so the recipe's placement is conv inputs only, symmetric. Before the shared recipe
# (our table, mse, head float) val-dev mAP at 416 was 0.3664 (FP32 0.3703; released nanodet-plus-m_416_int8 0.3585).
PLACEMENT = quantization.Placement(outputs=False, symmetric=True)
# Depthwise convolutions and the stem stay float: ncnn's x86 int8 kernels for them are slower than its float ones
# (benchmarks/ncnn_ops.py, 416, 2 threads, Intel Xeon with AMX; results/ncnn-ops-intel-xeon-amx*.json): depthwise
# 5x5 3.01 ms INT8 packed / 11.58 unpacked against 0.98 float, 3x3 3.23 / 4.22 against 1.56, the stem 1.90
# against 1.51; they are 6 % of the MACs. With no INT8 depthwise conv the model runs packed on x86 too
# (runtimes/ncnn.py). INT8 inference (sum of layer times): 28.14 ms against FP32's 17.62 before (1.60x), 15.25
# against 18.78 now (0.81x); the 65 int8 1x1 convs take 5.78 ms where float takes 9.51. Agreement with PyTorch on
# the 600 fidelity images (benchmarks/int8_fidelity.py, paired): 0.861 [0.851, 0.871] -> 0.879 [0.871, 0.888];
# depthwise only: 0.881 [0.872, 0.891] at 0.84x.
ALWAYS_FLOAT = ("depthwise", "stem")
INT8_COST = ("ncnn's x86 int8 1x1 convolutions are only 1.6x faster than its float ones (each quantizes its input "
             "and dequantizes its output), and ShuffleNet's concat, slice and shuffle cost the same in both "
             "(benchmarks/ncnn_ops.py)")


PNNX_ENV = "NANODET_DEPLOY_PNNX"  # path of a pnnx executable to use instead of the pip package's


def pnnx_binary() -> str:
    """$NANODET_DEPLOY_PNNX, else the ``pnnx`` executable installed with the pnnx package (beside this
    Python), else the one on PATH."""
    if os.environ.get(PNNX_ENV):
        return os.environ[PNNX_ENV]
    candidate = Path(sys.executable).with_name("pnnx")
    found = str(candidate) if candidate.exists() else shutil.which("pnnx")
    if found is None:
        from ..errors import MissingBackendError

        raise MissingBackendError("ncnn", "pnnx", "ncnn")
    return found


def to_ncnn(module, input_size: tuple[int, int], param_path: Path, bin_path: Path, fp16: bool) -> dict:
    """Trace ``module`` and convert it with pnnx to ``param_path`` / ``bin_path`` (input ``data``, output
    ``output``). Returns what happened."""
    import torch

    width, height = input_size
    with tempfile.TemporaryDirectory(prefix="nanodet-pnnx.") as work:
        work = Path(work)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic: the graph is static per size
            torch.jit.trace(module.eval(), torch.zeros(1, 3, height, width)).save(str(work / "model.pt"))
        outputs = {key: work / f"model.{key}" for key in ("pnnxparam", "pnnxbin", "pnnxpy", "pnnxonnx", "ncnnpy")}
        run_tool([pnnx_binary(), work / "model.pt", f"inputshape=[1,3,{height},{width}]f32",
                  f"fp16={int(fp16)}", f"ncnnparam={work / 'ncnn.param'}", f"ncnnbin={work / 'ncnn.bin'}",
                  *(f"{key}={path}" for key, path in outputs.items())], "pnnx", cwd=work)
        model = ncnn_format.read(work / "ncnn.param", work / "ncnn.bin")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ncnn_format.NcnnFormatError(f"pnnx gave inputs {model.inputs} and outputs {model.outputs}; "
                                          f"expected one of each")
    model.rename_blob(model.inputs[0], "data")
    model.rename_blob(model.outputs[0], "output")
    ncnn_format.write(model, param_path, bin_path)
    return {"exporter": "torch.jit.trace + pnnx", "pnnx_fp16": fp16, "layers": len(model.layers)}


def convert(module, processing, directory: Path, precision: str = "fp32", calib_paths=(),
            calib_method: str = DEFAULT_METHOD, progress=None, keep_float=DEFAULT_FLOAT_PARTS):
    """The ``--to ncnn`` target: ``model.param`` / ``model.bin``. Returns (files, conversion)."""
    param, weights = directory / "model.param", directory / "model.bin"
    conversion = to_ncnn(module, processing.input_size, param, weights, fp16=precision == "fp16")
    if precision == "fp16":
        conversion["fp16"] = "pnnx fp16=1: FP16 weight storage"
    if precision == "int8":
        conversion.update(quantize_int8(module, param, weights, processing, calib_paths, calib_method, keep_float,
                                        progress))
        (directory / "model.table").write_text(conversion.pop("table_text"))
    files = {"model": param.name, "weights": weights.name}
    if precision == "int8":
        files["table"] = "model.table"  # ncnn2table's format, for ncnn's own tools
    return files, conversion


def quantize_int8(module, param: Path, weights: Path, processing, calib_paths, method: str, keep_float,
                  progress=None) -> dict:
    """Calibrate (the shared recipe, on the same module's ONNX graph) and rewrite the FP32 ncnn model at
    ``param`` / ``weights`` as ncnn INT8 in place."""
    import onnx

    from . import onnx as onnx_converter

    with onnx_converter.intermediate_onnx(module, processing.input_size, param.parent) as (intermediate, _):
        original = onnx.load(str(intermediate))
    equalized, recipe, record = shared_recipe(original, calib_paths, processing, PLACEMENT, method, keep_float,
                                              progress, always_float=ALWAYS_FLOAT)
    model = ncnn_format.read(param, weights)
    table = ncnn_int8.write_recipe(model, original, equalized, recipe)
    ncnn_format.write(model, param, weights)
    return {**record, "writer": "nanodet-deploy ncnn INT8 writer (like ncnn2int8)",
            "table_text": ncnn_int8.table_text(table)}


def describe(conversion: dict) -> str:
    return f"{conversion['layers']} layers" + float_layers_summary(conversion)


def embed_manifest(path: Path, manifest_json: str) -> None:
    """ncnn's .param has no place for metadata: the manifest is the nanodet.json beside the model."""


def embedded_manifest(path: Path) -> str | None:
    return None
