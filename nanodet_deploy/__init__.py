"""nanodet-deploy: NanoDet-Plus from PyTorch to ONNX Runtime, OpenVINO, MNN and ncnn, with one shared
pre/post-processing path and a parity gate against the PyTorch reference."""

from . import offline as _offline
from .version import __version__

__all__ = ["Detector", "__version__"]

_offline.apply()  # before any backend library loads: no telemetry, nothing under HOME


def __getattr__(name):  # keep `import nanodet_deploy` light: torch loads only when a model is built
    if name == "Detector":
        from .detector import Detector
        return Detector
    raise AttributeError(name)
