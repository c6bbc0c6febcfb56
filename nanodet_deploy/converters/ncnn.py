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
from ..errors import UsageError
from . import ncnn_int8
from .calibration import calibration_tensors, check_keep_float, float_layers_summary
from .tools import run_tool

# INT8 calibration method and parts kept in float, by measured val-dev mAP at 416 (FP32 0.3703; the released
# nanodet-plus-m_416_int8 model: 0.3585), 100 calib-train images (benchmarks/ncnn_int8.py), float parts
# none / stem / head / stem+head:
#   kl 0.3538 / 0.3550 / 0.3505 / 0.3569;  aciq 0.3556 / 0.3540 / 0.3626 / 0.3561;
#   minmax 0.3520 / 0.3467 / 0.3514 / 0.3541;  mse 0.3629 / 0.3597 / 0.3664 / 0.3645.
# Per-layer sensitivity (everything KL-quantized but one layer, output MSE on 16 calibration images): no single
# layer removes more than 15% of the error (convrelu_29 14%, convrelu_2 11%, convrelu_48 7%), so the choice is
# by part, not by layer.
FLOAT_PARTS = {
    "stem": lambda model, num_outputs: [model.convolutions()[0].name],
    # the head's final convs: the only convolutions producing the raw class + distance channels
    "head": lambda model, num_outputs: [c.name for c in model.convolutions() if c.int_param(0) == num_outputs],
}
DEFAULT_FLOAT_PARTS = ("head",)
DEFAULT_METHOD = "mse"
CALIBRATION_METHODS = ncnn_int8.METHODS


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
    """The ``--to ncnn`` target: ``model.param`` / ``model.bin``. Returns (files, conversion, packages)."""
    param, weights = directory / "model.param", directory / "model.bin"
    conversion = to_ncnn(module, processing.input_size, param, weights, fp16=precision == "fp16")
    if precision == "fp16":
        conversion["fp16"] = "pnnx fp16=1: FP16 weight storage"
    if precision == "int8":
        conversion.update(quantize_int8(param, weights, processing, calib_paths, calib_method, keep_float,
                                        progress))
        (directory / "model.table").write_text(conversion.pop("table_text"))
    files = {"model": param.name, "weights": weights.name}
    if precision == "int8":
        files["table"] = "model.table"
    return files, conversion, ("pnnx", "ncnn")


def quantize_int8(param: Path, weights: Path, processing, calib_paths, method: str, keep_float,
                  progress=None) -> dict:
    """Calibrate the FP32 model at ``param`` / ``weights`` and rewrite it as ncnn INT8 in place."""
    from ..runtimes.ncnn import NcnnRuntime

    if method not in ncnn_int8.METHODS:
        raise UsageError(f"ncnn calibration methods: {', '.join(ncnn_int8.METHODS)} (got '{method}')")
    check_keep_float(keep_float, FLOAT_PARTS)
    model = ncnn_format.read(param, weights)
    num_outputs = processing.num_classes + 4 * (processing.reg_max + 1)
    kept = [name for part in keep_float for name in FLOAT_PARTS[part](model, num_outputs)]
    layers = [layer for layer in model.convolutions() if layer.name not in kept]
    tensors = list(calibration_tensors(calib_paths, processing))
    advance = progress("calibrating (2 passes)", 2 * len(tensors)) if progress else None
    statistics = ncnn_int8.collect_statistics(lambda: NcnnRuntime(param, weights, "fp32").net, model, layers,
                                              tensors, advance)
    table = ncnn_int8.calibration_table(layers, statistics, method)
    ncnn_int8.quantize(model, table)
    ncnn_format.write(model, param, weights)
    return {"int8": f"nanodet-deploy ncnn INT8 (table like ncnn2table, {method}; writer like ncnn2int8)",
            "calibration_method": method, "calibration_images": len(tensors), "keep_float": list(keep_float),
            "float_layers": kept, "int8_layers": len(layers), "table_text": ncnn_int8.table_text(table)}


def describe(conversion: dict) -> str:
    return f"{conversion['layers']} layers" + float_layers_summary(conversion)


def embed_manifest(path: Path, manifest_json: str) -> None:
    """ncnn's .param has no place for metadata: the manifest is the nanodet.json beside the model."""


def embedded_manifest(path: Path) -> str | None:
    return None
