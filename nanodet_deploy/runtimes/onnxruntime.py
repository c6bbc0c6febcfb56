"""ONNX Runtime, CPU execution provider; the session is created once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .base import Runtime


# QDQ propagation moves a QuantizeLinear up through the max-pool after the stem, so the pool runs on uint8 in NCHW:
# ONNX Runtime's profiler put that one node at 2.6 ms against 0.35 ms in float (benchmarks/onnxruntime_ops.py
# --all-optimizers, a 2-core Xeon). Without the move the INT8 model's outputs are the same to the bit (a max commutes
# with quantizing; measured on the 79 val-dev and 600 fidelity images: max |difference| 0) and it runs 14.64 instead
# of 17.67 ms per 416 image (FP32: 14.94; medians of 55 runs taking turns). FP32 and FP16 models hold no
# QuantizeLinear: nothing changes for them.
DISABLED_OPTIMIZERS = ["QDQPropagationTransformer"]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """The options every session of an export is opened with (also benchmarks/onnxruntime_ops.py's, which adds
    profiling); open it with ``disabled_optimizers=DISABLED_OPTIMIZERS``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime picks (one per physical core)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the FP16 model's cast warnings are expected
    # Idle intra-op threads spin by default and steal the core from everything else (preprocessing, other
    # sessions). Measured at 416 on 2 cores, FP32 median: 28.8 ms spinning vs 22.7 ms not, alone; with
    # FP32/FP16/INT8 sessions taking turns, 56.3 vs 25.5 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntime(Runtime):
    backend = "onnxruntime"
    reads_stored_precision = True

    def __init__(self, model_path: str | Path | bytes, precision: str = "fp32", threads: int | None = None):
        source = model_path if isinstance(model_path, bytes) else str(model_path)
        self.session = ort.InferenceSession(source, session_options(threads), providers=["CPUExecutionProvider"],
                                            disabled_optimizers=DISABLED_OPTIMIZERS)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.precision = precision

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None) -> "OnnxRuntime":
        """``files``: role -> path of each manifest file (manifest.pinned_files)."""
        import onnx

        path = files["model"]
        by_name = {name: files[role] for role, name in manifest.files.items()}
        model = onnx.load(str(path), load_external_data=False)  # parsed once, for both checks and the session
        stored = stored_precision(model, path, allowed_external=set(by_name))  # before ORT reads it
        runtime = cls(_session_source(model, path, by_name), precision=manifest.precision, threads=threads)
        runtime.stored_precision = stored
        return runtime

    def run(self, tensor: np.ndarray) -> np.ndarray:
        # ONNX Runtime's InferenceSession.run is thread-safe
        return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(tensor, np.float32)})[0]


def _session_source(model, path: Path, files: dict[str, Path]) -> Path | bytes:
    """What ONNX Runtime loads: the model file, or — when its weights are in external files (listed, checked by
    ``stored_precision``) — the model with their bytes inlined: ONNX Runtime looks for external data beside the
    model path, and a pinned /proc/self/fd/N path has no files beside it."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    external = [t for t in model.graph.initializer if uses_external_data(t)]
    if not external:
        return path
    for tensor in external:
        info = ExternalDataInfo(tensor)
        with open(files[info.location], "rb") as data:
            data.seek(info.offset or 0)
            tensor.raw_data = data.read(info.length) if info.length else data.read()
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return model.SerializeToString()


QUANTIZE_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}


def stored_precision(model, path: Path, allowed_external: set[str]) -> str:
    """What the .onnx (``model``, parsed from ``path`` without its external data) holds: "int8" (quantize/dequantize nodes), "fp16" (FP16 initializers) or "fp32". Weights
    in external data files must be plain names listed in the manifest (so they are checksummed too); ONNX
    Runtime itself would follow any relative or absolute location."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    from ..errors import ArtifactError

    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            location = ExternalDataInfo(tensor).location
            if location not in allowed_external:
                raise ArtifactError(f"{path}: weights in external file {location!r}, which nanodet.json does not "
                                    f"list: refused (external data must be a listed file inside the folder)")
    if any(node.op_type in QUANTIZE_OPS for node in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"
