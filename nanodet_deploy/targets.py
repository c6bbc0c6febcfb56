"""The one table of backends. Each row names a target's converter module (``nanodet_deploy.converters``), its
runtime class (``nanodet_deploy.runtimes``), the Python package and pip extra it needs, the precisions and
export options it accepts, the options its runtime takes, and its colour in plots. ``export``, ``verify``,
``bench``, the CLI's choices and help, and the runtime lookup all read this table and nothing else: a new
backend is a converter module, a runtime module, one row here and one pyproject extra.

Each backend's recipe (INT8 calibration method and parts kept in float, with the measurements that chose them)
lives in its converter module as ``DEFAULT_METHOD`` / ``DEFAULT_FLOAT_PARTS``; ``Target.int8_defaults()`` reads
them from there.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from .errors import MissingBackendError, UsageError

# Export options beyond precision and calibration images, as export() names them -> the CLI flag.
OPTION_FLAGS = {"opset": "--opset", "dynamic_batch": "--dynamic-batch", "calib_method": "--calib-method",
                "keep_float": "--keep-float", "u8_input": "--u8-input"}
INT8_ONLY_OPTIONS = ("calib_method", "keep_float")


@dataclass(frozen=True)
class Target:
    name: str                        # the export target (--to)
    backend: str                     # the runtime that runs its artifacts (--backend, manifests' "backend")
    runtime: str                     # "module.Class" in nanodet_deploy.runtimes
    package: str                     # the Python package the runtime and converter import
    extra: str                       # the pip extra that installs it
    converter: str | None = None     # module in nanodet_deploy.converters; None: the PyTorch reference
    precisions: tuple[str, ...] = ("fp32",)       # what export makes (weight-int8: MNN's weight-only INT8)
    options: frozenset = frozenset()              # export options accepted (OPTION_FLAGS keys)
    runtime_options: frozenset = frozenset()      # runtime options beyond threads, e.g. infer_precision
    execution_modes: tuple[str, ...] = ()         # extra precisions bench runs an FP32 artifact in (bf16)
    colour: str = "black"                         # in bench plots
    description: str = ""
    why_not: tuple = ()                           # (option, reason) for options it refuses, said with the error

    def runtime_class(self):
        """The runtime class; a missing package becomes one line naming the extra to install."""
        if importlib.util.find_spec(self.package) is None:  # found, not imported: importing is the runtime's job
            raise MissingBackendError(self.backend, self.package, self.extra)
        module, cls = self.runtime.rsplit(".", 1)
        return getattr(importlib.import_module(f"{__package__}.runtimes.{module}"), cls)

    def converter_module(self):
        if self.converter is None:
            raise UsageError(f"'{self.name}' is the PyTorch reference, not an export target")
        self.runtime_class()  # a missing backend package fails before any work
        return importlib.import_module(f"{__package__}.converters.{self.converter}")

    def int8_defaults(self) -> tuple[str | None, tuple[str, ...]]:
        """(calibration method, parts kept in float) of this target's INT8 recipe, from its converter."""
        module = importlib.import_module(f"{__package__}.converters.{self.converter}")
        return getattr(module, "DEFAULT_METHOD", None), tuple(getattr(module, "DEFAULT_FLOAT_PARTS", ()))


_ONNX_OPTIONS = frozenset({"opset", "dynamic_batch"})
REFERENCE = Target("torch", "torch", "torch.TorchRuntime", "torch", "torch", colour="tab:gray",
                   description="the PyTorch reference every artifact is measured against")
TARGETS = {t.name: t for t in (
    Target("onnx", "onnxruntime", "onnxruntime.OnnxRuntime", "onnxruntime", "onnx", converter="onnx",
           precisions=("fp32", "fp16", "int8"), options=_ONNX_OPTIONS | {"calib_method", "keep_float"},
           colour="tab:blue", description="ONNX Runtime"),
    Target("openvino", "openvino", "openvino.OpenVinoRuntime", "openvino", "openvino", converter="openvino",
           precisions=("fp32", "fp16", "int8"), options=_ONNX_OPTIONS | {"calib_method", "keep_float", "u8_input"},
           runtime_options=frozenset({"infer_precision", "streams"}), execution_modes=("bf16",), colour="tab:purple",
           description="OpenVINO IR; INT8 from the shared recipe or NNCF"),
    Target("mnn", "mnn", "mnn.MnnRuntime", "MNN", "mnn", converter="mnn",
           precisions=("fp32", "fp16", "int8", "weight-int8"), options=_ONNX_OPTIONS | {"calib_method", "keep_float"},
           colour="tab:orange", description="MNN"),
    Target("ncnn", "ncnn", "ncnn.NcnnRuntime", "ncnn", "ncnn", converter="ncnn",
           precisions=("fp32", "fp16", "int8"), options=frozenset({"calib_method", "keep_float"}),
           colour="tab:green", description="ncnn via pnnx", why_not=(("dynamic_batch", "ncnn has no batch axis"),
                                                                        ("opset", "pnnx reads the traced graph"))),
)}
# runtime backends by name: the reference, then every target's (manifests name their backend this way)
BACKENDS = {t.backend: t for t in (REFERENCE, *TARGETS.values())}


def check_options(target: Target, precision: str, options: dict) -> None:
    """``precision`` and the export ``options`` given (None: not given) must be ones ``target`` takes: anything
    else is a usage error naming the target and the option, never silently dropped."""
    if precision not in target.precisions:
        raise UsageError(f"--to {target.name} exports {', '.join(target.precisions)}, not {precision}")
    reasons = dict(target.why_not)
    for option, value in options.items():
        if value is None:
            continue
        flag = OPTION_FLAGS[option]
        if option not in target.options:
            reason = f"{reasons[option]}: " if option in reasons else ""
            raise UsageError(f"{reason}{flag} does not apply to --to {target.name}")
        if option in INT8_ONLY_OPTIONS and precision != "int8":
            raise UsageError(f"{flag} applies to --int8 exports only")


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise UsageError(f"unknown export target '{name}' (available: {', '.join(TARGETS)})")
    return TARGETS[name]


def get_backend(name: str) -> Target:
    if name not in BACKENDS:
        raise UsageError(f"unknown backend '{name}' (available: {', '.join(BACKENDS)})")
    return BACKENDS[name]
