"""ncnn through its Python bindings, driven as ncnn's own Python examples do: Net -> load_param/load_model
once, then one Extractor per call.

Models with our single output ``[N, C + 4*(reg_max+1)]`` run as they are. Models with NanoDet's per-level
outputs (``cls8..cls64`` after sigmoid, ``dis8..dis64``, as in upstream's and third-party ncnn releases) are
mapped to that layout here, in ``_levels_to_raw`` and nowhere else.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import ncnn
import numpy as np

from ..errors import ArtifactError, UsageError
from ..ncnn_format import read as read_ncnn
from .base import Runtime

# precision -> ncnn options. FP32 turns fp16/bf16 storage off (ncnn's default is on: not exact); FP16 models
# store FP16 weights and run with FP16 storage and FP32 arithmetic; INT8 models run their quantized layers with
# int8 kernels and the rest in FP32. FP16 arithmetic is off for FP16 too: x86 has none (the flag changes no bit
# here), and on ARMv8.2 phones it costs 0.3 mAP points (320, val-dev, emulated; README "Phone"): the Android app
# runs these same options (android_demo/core/nanodet_ncnn.cpp), fp16 arithmetic only under its "Fast fp16" switch.
PRECISION_OPTIONS = {
    "fp32": {"use_fp16_storage": False, "use_fp16_packed": False, "use_fp16_arithmetic": False,
             "use_bf16_storage": False, "use_int8_inference": False, "use_packing_layout": True},
    "fp16": {"use_fp16_storage": True, "use_fp16_packed": True, "use_fp16_arithmetic": False,
             "use_bf16_storage": False, "use_int8_inference": False, "use_packing_layout": True},
    "int8": {"use_fp16_storage": False, "use_fp16_packed": False, "use_fp16_arithmetic": False,
             "use_bf16_storage": False, "use_int8_inference": True, "use_packing_layout": True},
}
# INT8 on x86 without the packed layout when the model has INT8 depthwise convolutions: ncnn's pack-8 depthwise
# INT8 kernel there dequantizes with an approximate reciprocal (_mm_rcp_ps, 12 bits, whose table differs between CPU
# vendors; src/layer/x86/convolutiondepthwise_x86.cpp of ncnn 1.0.20261020, line 945) where every other kernel,
# ARM's included, divides exactly. Measured at 320 on the 79 val-dev images (benchmarks/phone_arm64.py): packed
# x86 gave the emulated phone's detections on 0/79 images (|Δscore| up to 0.14), unpacked on 76/79 (the other 3
# within 0.027: last-bit float differences between the ISAs, carried by int8 rounding); ARM's integer kernels
# (Winograd on cortex-a53, sdot on a76, i8mm on max) agree to the bit. Unpacked is slow: at 416, 2 threads, Intel
# Xeon with AMX (benchmarks/ncnn_ops.py), its float 5x5 depthwise kernel takes 35.9 ms where the packed one takes
# 1.0. Our INT8 exports keep depthwise convolutions float (converters/ncnn.py: ALWAYS_FLOAT), so they run packed;
# a model with INT8 depthwise convolutions (ncnn's own tools', the released one) still runs unpacked. The app
# applies the same rule (android_demo/core/nanodet_ncnn.cpp).
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")


def has_int8_depthwise(model) -> bool:
    """Whether an ncnn model (ncnn_format.NcnnModel) has a depthwise convolution with INT8 weights."""
    return any(layer.type == "ConvolutionDepthWise" and layer.int8 for layer in model.layers)


def precision_options(precision: str, machine: str | None = None, int8_depthwise: bool = True) -> dict[str, bool]:
    """ncnn's switches for an export of ``precision`` on ``machine`` (default: this one, platform.machine()), for
    a model with (``int8_depthwise``) or without INT8 depthwise convolutions."""
    options = dict(PRECISION_OPTIONS[precision])
    if precision == "int8" and int8_depthwise and (machine or platform.machine()).lower() in X86_MACHINES:
        options["use_packing_layout"] = False
    return options


_LEVEL_OUTPUT = re.compile(r"(cls|dis)(\d+)$")


class NcnnRuntime(Runtime):
    backend = "ncnn"
    reads_stored_precision = True

    def __init__(self, param_path: str | Path, bin_path: str | Path, precision: str = "fp32",
                 threads: int | None = None):
        if precision not in PRECISION_OPTIONS:
            raise UsageError(f"ncnn precision must be one of {list(PRECISION_OPTIONS)}, got '{precision}'")
        model = read_ncnn(param_path)
        if len(model.inputs) != 1:
            raise ArtifactError(f"{param_path}: expected one input blob, found {model.inputs}")
        self.input_name = model.inputs[0]
        self.output_names = model.outputs
        levels = [_LEVEL_OUTPUT.match(name) for name in self.output_names]
        self.level_strides = (sorted({int(m.group(2)) for m in levels}) if len(levels) > 1 and all(levels)
                              else None)
        if self.level_strides is None and len(self.output_names) != 1:
            raise ArtifactError(f"{param_path}: outputs {self.output_names} are neither one raw output nor "
                             f"per-level cls<stride>/dis<stride>")
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads or 1
        # OpenMP threads sleep at once after each layer instead of spinning 20 ms (ncnn's default). Measured at
        # 416, 2 threads: idle machine 15.26 vs 15.71 ms; with another process busy on the same cores 0.12 s vs
        # 2.66 s per inference (spinning threads starve the one that holds the work)
        self.net.opt.openmp_blocktime = 0
        for option, value in precision_options(precision, int8_depthwise=has_int8_depthwise(model)).items():
            setattr(self.net.opt, option, value)
        if self.net.load_param(str(param_path)) != 0 or self.net.load_model(str(bin_path)) != 0:
            raise ArtifactError(f"{param_path}: ncnn could not load this model (with {bin_path})")
        self.precision = precision

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None) -> "NcnnRuntime":
        """``files``: role -> path of each manifest file (manifest.pinned_files)."""
        param, weights = files["model"], files["weights"]
        stored = stored_precision(param, weights)  # before ncnn reads them: ncnn_format checks every length
        runtime = cls(param, weights, precision=manifest.precision, threads=threads)
        runtime.stored_precision = stored
        return runtime

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """[1, 3, H, W] -> [1, N, C + 4*(reg_max+1)]. ncnn has no batch axis: batches run image by image."""
        return np.stack([self._run_one(image) for image in tensor])

    def _run_one(self, image: np.ndarray) -> np.ndarray:
        # ncnn.Mat borrows the numpy buffer: both stay referenced until the extractor is done with them
        array = np.ascontiguousarray(image, np.float32)
        mat = ncnn.Mat(array)
        with self.net.create_extractor() as extractor:
            extractor.input(self.input_name, mat)
            outputs = {}
            for name in self.output_names:
                status, out = extractor.extract(name)
                if status != 0:
                    raise ArtifactError(f"ncnn failed to compute blob '{name}' (status {status})")
                outputs[name] = np.array(out)  # a copy: the Mat's memory belongs to the extractor
        del mat, array
        if self.level_strides is None:
            return outputs[self.output_names[0]]
        return _levels_to_raw(outputs, self.level_strides)


def stored_precision(param_path: Path, bin_path: Path) -> str:
    """What the .bin holds: int8 weights (our INT8 writer), fp16 ones (--fp16), else fp32."""
    model = read_ncnn(param_path, bin_path)
    dtypes = {array.dtype for layer in model.layers for array, tagged in layer.weights if tagged}
    return "int8" if np.dtype(np.int8) in dtypes else "fp16" if np.dtype(np.float16) in dtypes else "fp32"


def _levels_to_raw(outputs: dict[str, np.ndarray], strides: list[int]) -> np.ndarray:
    """Per-level ``cls<s>`` [C, H, W] and ``dis<s>`` [H, W, 4*(reg_max+1)] (NanoDet's ncnn release layout:
    distances permuted to channels-last) -> our [N, C + 4*(reg_max+1)], priors row-major per level, levels by
    stride."""
    rows = []
    for stride in strides:
        cls, dis = outputs[f"cls{stride}"], outputs[f"dis{stride}"]
        num_classes, height, width = cls.shape
        rows.append(np.concatenate([cls.reshape(num_classes, height * width).T,
                                    dis.reshape(height * width, -1)], axis=1))
    return np.concatenate(rows)
