"""The one table of backends. Each row names a backend (``--to``, ``--backend``, manifests' ``"backend"``: one
name), its converter module and runtime class, the Python packages its runtime and its exports import, the pip
extra that installs them, the precisions and export options it accepts, the options its runtime takes, and its
colour in plots. ``export``, ``verify``, ``bench``, the CLI's choices and help, the machine line's package
versions, the runtime lookup and the backend-parametrised tests all read this table and nothing else: a new
backend is a converter module, a runtime module, one row here and one pyproject extra (tests/test_targets.py
keeps the extras equal to the rows' packages).

Each backend's recipe (INT8 calibration method and parts kept in float, with the measurements that chose them)
lives in its converter module as ``DEFAULT_METHOD`` / ``DEFAULT_FLOAT_PARTS``; ``Target.int8_defaults()`` reads
them from there.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass

from .errors import MissingBackendError, UsageError

# Export options beyond precision and calibration images, as export() names them -> the CLI flag.
OPTION_FLAGS = {"opset": "--opset", "dynamic_batch": "--dynamic-batch", "calib_method": "--calib-method",
                "keep_float": "--keep-float", "u8_input": "--u8-input"}
INT8_ONLY_OPTIONS = ("calib_method", "keep_float")
# What every ONNX-based export imports (converters/onnx.py) and what the shared INT8 recipe runs its float model
# with (quantization.calibrate: ONNX Runtime), whatever the target's own runtime is
ONNX_EXPORT_PACKAGES = ("torch", "onnx", "onnxsim", "onnxruntime")


@dataclass(frozen=True)
class Target:
    name: str                        # the backend's one name: --to, --backend, manifests' "backend"
    runtime: str                     # "package.module:Class" of its runtime
    package: str                     # the Python package its runtime imports (import name = distribution name)
    extra: str                       # the pip extra that installs `package` and `export_packages`
    converter: str | None = None     # "package.module" of its converter; None: the PyTorch reference
    export_packages: tuple[str, ...] = ()         # what its converter and the INT8 recipe import besides `package`
    aliases: tuple[str, ...] = ()                 # other names --to / --backend accept
    precisions: tuple[str, ...] = ("fp32",)       # what export makes (weight-int8: MNN's weight-only INT8)
    options: frozenset = frozenset()              # export options accepted (OPTION_FLAGS keys)
    runtime_options: frozenset = frozenset()      # runtime options beyond threads, e.g. infer_precision
    execution_modes: tuple[str, ...] = ()         # extra precisions bench runs an FP32 artifact in (bf16)
    colour: str = "black"                         # in bench plots
    description: str = ""
    why_not: tuple = ()                           # (option, reason) for options it refuses, said with the error

    @property
    def backend(self) -> str:
        """The name manifests and runtimes use: the row's one name."""
        return self.name

    @property
    def packages(self) -> tuple[str, ...]:
        """Every package this backend needs to export and run, its runtime's first."""
        return tuple(dict.fromkeys((self.package, *self.export_packages)))

    def runtime_class(self):
        """The runtime class; a missing package becomes one line naming the extra to install."""
        self._require((self.package,))
        module, cls = self.runtime.split(":")
        return getattr(importlib.import_module(module), cls)

    def converter_module(self):
        """The converter module; any package the export needs that is missing (its runtime's, ONNX's, the INT8
        recipe's) becomes one line naming the extra to install, before any work."""
        if self.converter is None:
            raise UsageError(f"'{self.name}' is the PyTorch reference, not an export target")
        self._require(self.packages)
        return importlib.import_module(self.converter)

    def installed(self) -> bool:
        """Whether every package this backend needs to export and run is installed (found, not imported)."""
        return all(importlib.util.find_spec(package) is not None for package in self.packages)

    def _require(self, packages) -> None:
        for package in packages:
            if importlib.util.find_spec(package) is None:  # found, not imported: importing is the module's job
                raise MissingBackendError(self.name, package, self.extra)

    def int8_defaults(self) -> tuple[str | None, tuple[str, ...]]:
        """(calibration method, parts kept in float) of this target's INT8 recipe, from its converter."""
        module = importlib.import_module(self.converter)
        return getattr(module, "DEFAULT_METHOD", None), tuple(getattr(module, "DEFAULT_FLOAT_PARTS", ()))

    def int8_cost(self) -> str:
        """Why this backend's INT8 can run slower than its FP32 on a CPU with int8 dot products, as its per-layer
        profile measured it (``INT8_COST`` in its converter module); "" when none was measured."""
        return getattr(importlib.import_module(self.converter), "INT8_COST", "") if self.converter else ""


_ONNX_OPTIONS = frozenset({"opset", "dynamic_batch"})
_RUNTIMES, _CONVERTERS = f"{__package__}.runtimes", f"{__package__}.converters"
REFERENCE = Target("torch", f"{_RUNTIMES}.torch:TorchRuntime", "torch", "torch", colour="tab:gray",
                   description="the PyTorch reference every artifact is measured against")
TARGETS = {t.name: t for t in (
    Target("onnxruntime", f"{_RUNTIMES}.onnxruntime:OnnxRuntime", "onnxruntime", "onnxruntime",
           converter=f"{_CONVERTERS}.onnx", export_packages=ONNX_EXPORT_PACKAGES, aliases=("onnx",),
           precisions=("fp32", "fp16", "int8"), options=_ONNX_OPTIONS | {"calib_method", "keep_float"},
           colour="tab:blue", description="ONNX Runtime"),
    Target("openvino", f"{_RUNTIMES}.openvino:OpenVinoRuntime", "openvino", "openvino",
           converter=f"{_CONVERTERS}.openvino", export_packages=(*ONNX_EXPORT_PACKAGES, "nncf"),
           precisions=("fp32", "fp16", "int8"), options=_ONNX_OPTIONS | {"calib_method", "keep_float", "u8_input"},
           runtime_options=frozenset({"infer_precision", "streams"}), execution_modes=("bf16",), colour="tab:purple",
           description="OpenVINO IR; INT8 from the shared recipe or NNCF"),
    Target("mnn", f"{_RUNTIMES}.mnn:MnnRuntime", "MNN", "mnn", converter=f"{_CONVERTERS}.mnn",
           export_packages=ONNX_EXPORT_PACKAGES, precisions=("fp32", "fp16", "int8", "weight-int8"),
           options=_ONNX_OPTIONS | {"calib_method", "keep_float"},
           colour="tab:orange", description="MNN"),
    # pnnx converts the traced module; the INT8 recipe calibrates the ONNX export of it (quantization.py)
    Target("ncnn", f"{_RUNTIMES}.ncnn:NcnnRuntime", "ncnn", "ncnn", converter=f"{_CONVERTERS}.ncnn",
           export_packages=("pnnx", *ONNX_EXPORT_PACKAGES),
           precisions=("fp32", "fp16", "int8"), options=frozenset({"calib_method", "keep_float"}),
           colour="tab:green", description="ncnn via pnnx", why_not=(("dynamic_batch", "ncnn has no batch axis"),
                                                                        ("opset", "pnnx reads the traced graph"))),
    # torch.export reads the module itself (INT8: the shared recipe, run on our ONNX export, through PT2E);
    # the program runs on ExecuTorch's XNNPACK delegate
    Target("executorch", f"{_RUNTIMES}.executorch:ExecuTorchRuntime", "executorch", "executorch",
           converter=f"{_CONVERTERS}.executorch", export_packages=ONNX_EXPORT_PACKAGES,
           precisions=("fp32", "fp16", "int8"), options=frozenset({"calib_method", "keep_float"}), colour="tab:red",
           description="ExecuTorch .pte, XNNPACK delegate",
           why_not=(("dynamic_batch", "the ExecuTorch program is exported for batch 1"),
                    ("opset", "torch.export reads the module, not ONNX"))),
    # litert_torch converts the module itself (INT8 as ExecuTorch's); the interpreter runs it on XNNPACK
    Target("litert", f"{_RUNTIMES}.litert:LiteRtRuntime", "ai_edge_litert", "litert",
           converter=f"{_CONVERTERS}.litert",
           export_packages=("litert_torch", "ai_edge_quantizer", *ONNX_EXPORT_PACKAGES),
           aliases=("tflite",), precisions=("fp32", "fp16", "int8"), options=frozenset({"calib_method", "keep_float"}),
           colour="tab:olive", description="LiteRT (TensorFlow Lite) flatbuffer, XNNPACK delegate",
           why_not=(("dynamic_batch", "the LiteRT model is converted for batch 1"),
                    ("opset", "litert_torch reads the module, not ONNX"))),
)}
# the cell every bench ratio is to (same size and threads, same run), and the backend the Android demo app runs
BENCH_BASELINE = ("onnxruntime", "fp32")
APP_BACKEND = "ncnn"
# runtime backends by name: the reference, then every target's (manifests name their backend this way)
BACKENDS = {t.name: t for t in (REFERENCE, *TARGETS.values())}


def register(target: Target) -> Target:
    """Add a row (a backend living outside this package, or a test's): every reader of the table sees it."""
    if target.name in BACKENDS or any(target.name in t.aliases or set(target.aliases) & {t.name, *t.aliases}
                                      for t in BACKENDS.values()):
        raise UsageError(f"a backend named '{target.name}' (or one of its aliases) is already registered")
    TARGETS[target.name] = BACKENDS[target.name] = target
    return target


# Backends living outside this package: modules named here (comma-separated) are imported once the table above
# exists, and each adds its row with register() — as tests/toy_backend.py does.
PLUGINS_ENV = "NANODET_DEPLOY_BACKENDS"


def _load_plugins() -> None:
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except Exception as e:  # one line, and the built-in backends still work
            print(f"warning: {PLUGINS_ENV}: cannot import '{name}' ({type(e).__name__}: {e})", file=sys.stderr)


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


def _by_name(rows: dict, name: str) -> Target | None:
    return rows.get(name) or next((t for t in rows.values() if name in t.aliases), None)


def get_target(name: str) -> Target:
    """The export target ``name`` (or an alias of it, e.g. ``onnx``)."""
    target = _by_name(TARGETS, name)
    if target is None:
        raise UsageError(f"unknown export target '{name}' (available: {', '.join(TARGETS)})")
    return target


def get_backend(name: str) -> Target:
    """The backend ``name`` (or an alias of it), the PyTorch reference included."""
    target = _by_name(BACKENDS, name)
    if target is None:
        raise UsageError(f"unknown backend '{name}' (available: {', '.join(BACKENDS)})")
    return target


_load_plugins()
