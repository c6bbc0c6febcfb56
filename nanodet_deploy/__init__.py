"""nanodet-deploy: NanoDet-Plus from PyTorch to ONNX Runtime, OpenVINO, MNN and ncnn, with one shared
pre/post-processing path and a parity gate against the PyTorch reference."""

__version__ = "0.1.0"

from . import offline as _offline

_offline.apply()  # before any backend library loads: no telemetry, nothing under HOME


def __getattr__(name):  # keep `import nanodet_deploy` light: torch loads only when a model is built
    if name == "Detector":
        from .detector import Detector
        return Detector
    raise AttributeError(name)
