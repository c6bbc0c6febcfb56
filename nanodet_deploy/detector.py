"""Detector = shared preprocessing + one runtime + shared decode/NMS. Every backend goes through here, so
every backend gives the same boxes for the same raw output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .processing import (IOU_THR, MAX_DETS, SCORE_THR, Detections, ProcessingConfig,
                         postprocess, preprocess)
from .errors import UsageError
from .runtimes import open_export, runtime_class
from .targets import REFERENCE


class Detector:
    """``Detector(checkpoint="nanodet-plus-m_416.pth")(image_bgr)`` -> Detections in image pixels.

    ``model`` names a preset, ``config`` an official NanoDet training YAML; without either the preset is taken
    from the checkpoint's zoo name or file name. ``input_size`` is (width, height). Exported artifacts (ONNX
    Runtime, ...) load with ``Detector.from_export(DIR)``.
    """

    def __init__(self, backend: str = "torch", checkpoint: str | Path | None = None, model: str | None = None,
                 config: str | Path | None = None, input_size: tuple[int, int] | None = None,
                 keep_ratio: bool | None = None, score_thr: float = SCORE_THR, iou_thr: float = IOU_THR,
                 max_dets: int = MAX_DETS, threads: int | None = None, unsafe_load: bool = False):
        from .model import load

        runtime_cls = runtime_class(backend)  # fail on an unknown or missing backend before loading anything
        if backend != REFERENCE.backend:
            raise UsageError(f"backend '{backend}' runs an exported model: export it (nanodet-deploy export) "
                             f"and use Detector.from_export(DIR) / --export DIR")
        loaded = load(checkpoint, model=model, config=config, input_size=input_size, keep_ratio=keep_ratio,
                      unsafe=unsafe_load)
        self._set(runtime_cls(loaded.module, threads=threads), processing_config(loaded.spec, score_thr, iou_thr,
                                                                                  max_dets),
                  loaded.spec.class_names, loaded.spec.name, loaded.sha256)

    def _set(self, runtime, processing: ProcessingConfig, class_names, name: str, checkpoint_sha256: str | None):
        self.runtime, self.processing = runtime, processing
        self.class_names, self.name, self.checkpoint_sha256 = list(class_names), name, checkpoint_sha256

    @classmethod
    def from_runtime(cls, runtime, processing: ProcessingConfig, class_names, name: str = "model",
                     checkpoint_sha256: str | None = None) -> "Detector":
        """A detector around any ``runtimes.base.Runtime``, e.g. an ncnn model made elsewhere:
        ``Detector.from_runtime(NcnnRuntime(param, bin), processing_config(spec), spec.class_names)``."""
        detector = cls.__new__(cls)
        detector._set(runtime, processing, class_names, name, checkpoint_sha256)
        return detector

    @classmethod
    def from_export(cls, directory: str | Path, threads: int | None = None, score_thr: float | None = None,
                    infer_precision: str | None = None, streams: int | None = None) -> "Detector":
        """A detector for an export folder: everything it needs is in its ``nanodet.json``.
        ``infer_precision`` ("fp32" / "bf16") and ``streams`` (throughput mode: that many frames inferred at
        once by ``streaming.pipelined``) apply to OpenVINO exports."""
        from dataclasses import replace

        from .manifest import read_manifest

        directory = Path(directory)
        manifest = read_manifest(directory, check_files=False)  # open_export checks the very bytes it loads
        runtime = open_export(directory, manifest, threads=threads, infer_precision=infer_precision, streams=streams)
        processing = manifest.processing_config()
        if score_thr is not None:
            processing = replace(processing, score_thr=score_thr)
        return cls.from_runtime(runtime, processing, manifest.class_names, manifest.model,
                                manifest.checkpoint_sha256)

    def raw(self, tensor: np.ndarray) -> np.ndarray:
        """Input tensor [B, 3, H, W] -> raw output [B, N, C + 4*(reg_max+1)] of the runtime."""
        return self.runtime.run(tensor)

    def __call__(self, image: np.ndarray) -> Detections:
        """One BGR image (H x W x 3 uint8; gray, BGRA and 16-bit are converted) -> its detections."""
        tensor, matrix = preprocess(image, self.processing, self.runtime.input_format)
        raw = self.runtime.run(tensor)[0]
        return postprocess(raw, matrix, (image.shape[1], image.shape[0]), self.processing)


def processing_config(spec, score_thr: float = SCORE_THR, iou_thr: float = IOU_THR,
                      max_dets: int = MAX_DETS) -> ProcessingConfig:
    """``spec.processing_config(...)``: kept as a function for callers that hold a spec."""
    return spec.processing_config(score_thr, iou_thr, max_dets)
