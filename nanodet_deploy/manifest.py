"""``nanodet.json``: the single description of an exported artifact. One function writes it, every runtime
reads it, so ``Detector.from_export(DIR)`` needs nothing else."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from .errors import UsageError
from .files import write_text_atomic
from .processing import ProcessingConfig

MANIFEST_NAME = "nanodet.json"
SCHEMA_VERSION = 1
OUTPUT_LAYOUT = ("one tensor [B, N, C + 4*(reg_max+1)]: C sigmoid class scores, then 4 x (reg_max+1) "
                 "distance logits (left, top, right, bottom); N points stride 8 -> 64, row-major per level")


class ManifestError(UsageError):
    """A missing, malformed or inconsistent nanodet.json."""


@dataclass
class Manifest:
    model: str
    class_names: list[str]
    input_width: int
    input_height: int
    mean: list[float]
    std: list[float]
    keep_ratio: bool
    strides: list[int]
    reg_max: int
    backend: str                  # runtime that runs the artifact: "onnxruntime", "openvino", "mnn", "ncnn"
    precision: str                # "fp32", "fp16", "int8"
    files: dict[str, str]         # role -> file name in the export folder, e.g. {"model": "model.onnx"}
    checkpoint_sha256: str
    score_thr: float = 0.05
    iou_thr: float = 0.6
    max_dets: int = 100
    color_order: str = "BGR"
    resize: str = "warpPerspective linear"
    input_name: str = "data"
    output_name: str = "output"
    output_layout: str = OUTPUT_LAYOUT
    batch: str = "1"              # "1", or "dynamic"
    versions: dict[str, str] = field(default_factory=dict)   # package -> version used to make it
    conversion: dict = field(default_factory=dict)           # options: opset, calibration, excluded nodes...
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def processing_config(self) -> ProcessingConfig:
        return ProcessingConfig(input_size=(self.input_width, self.input_height), num_classes=self.num_classes,
                                strides=tuple(self.strides), reg_max=self.reg_max, mean=tuple(self.mean),
                                std=tuple(self.std), keep_ratio=self.keep_ratio, score_thr=self.score_thr,
                                iou_thr=self.iou_thr, max_dets=self.max_dets)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> "Manifest":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ManifestError(f"{source}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: not a nanodet-deploy manifest")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ManifestError(f"{source}: manifest schema {data.get('schema_version')!r}, this version reads "
                                f"{SCHEMA_VERSION}")
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ManifestError(f"{source}: missing {', '.join(missing)}")
        manifest = cls(**{k: v for k, v in data.items() if k in known})
        manifest.validate(source)
        return manifest

    def validate(self, source: str = MANIFEST_NAME) -> None:
        problems = []
        if not (isinstance(self.input_width, int) and isinstance(self.input_height, int)
                and self.input_width > 0 and self.input_height > 0):
            problems.append(f"input size {self.input_width}x{self.input_height}")
        if not self.class_names:
            problems.append("no class names")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean/std must be 3 values, std > 0")
        if not self.strides or self.reg_max < 1:
            problems.append("strides / reg_max")
        if "model" not in self.files:
            problems.append("no model file")
        if problems:
            raise ManifestError(f"{source}: invalid manifest ({'; '.join(problems)})")


def write_manifest(directory: str | Path, manifest: Manifest) -> Path:
    manifest.validate()
    path = Path(directory) / MANIFEST_NAME
    write_text_atomic(path, manifest.to_json() + "\n")
    return path


def read_manifest(directory: str | Path) -> Manifest:
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ManifestError(f"{directory}: no such export folder")
    if not path.is_file():
        hint = f" (a rejected export is in {directory / 'rejected'})" if (directory / "rejected").is_dir() else ""
        raise ManifestError(f"{directory}: no {MANIFEST_NAME} — not an export folder{hint}")
    manifest = Manifest.from_json(path.read_text(), source=str(path))
    for role, name in manifest.files.items():
        if not (directory / name).is_file():
            raise ManifestError(f"{path}: {role} file {name} is missing")
    return manifest


def package_versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("nanodet-deploy", *packages):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
