"""``export()``: checkpoint -> artifact in a target format and precision -> manifest -> parity gate.

Everything is built in a staging folder beside ``out`` and moved into place only when the parity gate passes;
an artifact over budget goes to ``out/rejected/`` (with its parity.json) and a previous good export in
``out`` stays untouched.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .manifest import MANIFEST_NAME, Manifest, package_versions, read_manifest, write_manifest
from .parity import Budgets, ParityReport, compare, synthetic_images, write_report

PARITY_NAME = "parity.json"
REJECTED_DIR = "rejected"
PRECISIONS = ("fp32", "fp16", "int8")

# target -> (converter module in nanodet_deploy.converters, runtime backend that runs its artifact)
TARGETS = {
    "onnx": ("onnx", "onnxruntime"),
    "openvino": ("openvino", "openvino"),
    "mnn": ("mnn", "mnn"),
    "ncnn": ("ncnn", "ncnn"),
}


@dataclass
class ExportResult:
    directory: Path          # where the artifact is: ``out``, or ``out/rejected`` when the gate failed
    manifest: Manifest
    report: ParityReport
    conversion: dict

    @property
    def accepted(self) -> bool:
        return self.report.passed


def export(checkpoint, to: str = "onnx", out: str | Path = "export", model: str | None = None,
           config: str | Path | None = None, input_size: tuple[int, int] | None = None,
           keep_ratio: bool | None = None, precision: str = "fp32", calib: str | Path | None = None,
           calib_images: int = 100, calib_method: str | None = None, keep_float=None, opset: int | None = None,
           dynamic_batch: bool = False, verify_images: str | Path | None = None,
           verify_ann: str | Path | None = None, budgets: Budgets | None = None, threads: int | None = None,
           infer_precision: str | None = None, weight_int8: bool = False, unsafe_load: bool = False,
           progress=None) -> ExportResult:
    """Export ``checkpoint`` to ``to`` in ``precision`` under ``out`` and gate it against PyTorch.

    ``keep_float`` names the parts INT8 keeps in float and ``calib_method`` how INT8 ranges are calibrated
    (both default per target, chosen by measured mAP; ``keep_float=()`` for none).
    ``infer_precision`` ("f32" / "bf16", OpenVINO) is how the gate runs the artifact. ``weight_int8`` (MNN)
    stores INT8 weights only — activations stay float; its precision is recorded as "weight-int8".
    ``progress(description, total)`` returns a callable to advance a progress bar (the CLI passes rich's).
    """
    from .converters.calibration import calibration_images
    from .converters.onnx import DEFAULT_OPSET
    from .detector import processing_config
    from .model import load
    from .runtimes import runtime_class

    if to not in TARGETS:
        raise UsageError(f"unknown export target '{to}' (available: {', '.join(TARGETS)})")
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    if precision == "int8" and calib is None:
        raise UsageError("--int8 needs calibration images: --calib DIR")
    if weight_int8 and (to != "mnn" or precision != "fp32"):
        raise UsageError("--weight-int8 is an MNN option and excludes --fp16 / --int8")
    module_name, backend = TARGETS[to]
    runtime_class(backend)  # a missing backend package fails before any work
    converter = importlib.import_module(f"{__package__}.converters.{module_name}")
    calib_paths = calibration_images(calib, calib_images) if precision == "int8" else []
    budgets = budgets or Budgets()
    loaded = load(checkpoint, model=model, config=config, input_size=input_size, keep_ratio=keep_ratio,
                  unsafe=unsafe_load)
    processing = processing_config(loaded.spec)
    out = Path(out)
    staging = _staging_folder(out)
    try:
        files, conversion, packages = converter.convert(
            loaded.module, processing, staging, precision=precision, opset=opset or DEFAULT_OPSET,
            dynamic_batch=dynamic_batch, calib_paths=calib_paths, progress=progress,
            **({} if calib_method is None else {"calib_method": calib_method}),
            **({} if keep_float is None else {"keep_float": tuple(keep_float)}),
            **({"weight_int8": True} if weight_int8 else {}))
        precision = "weight-int8" if weight_int8 else precision
        spec = loaded.spec
        manifest = Manifest(
            model=spec.name, class_names=list(spec.class_names), input_width=spec.input_size[0],
            input_height=spec.input_size[1], mean=list(spec.mean), std=list(spec.std), keep_ratio=spec.keep_ratio,
            strides=list(spec.strides), reg_max=spec.reg_max, backend=backend, precision=precision, files=files,
            checkpoint_sha256=loaded.sha256, batch="dynamic" if dynamic_batch else "1",
            score_thr=processing.score_thr, iou_thr=processing.iou_thr, max_dets=processing.max_dets,
            versions=package_versions("torch", *packages),
            conversion={"target": to, "checkpoint": str(Path(loaded.checkpoint).resolve()),
                        "architecture": spec.architecture(), **conversion})
        converter.embed_manifest(staging / files["model"], manifest.to_json())
        write_manifest(staging, manifest)
        from .runtimes.torch import TorchRuntime

        report = gate(staging, TorchRuntime(loaded.module, threads=threads), manifest, verify_images,
                      verify_ann, budgets, threads, progress, infer_precision=infer_precision)
        report.artifact = str(out if report.passed else out / REJECTED_DIR)  # where it is about to go
        write_report(staging / PARITY_NAME, [report], budgets)
        directory = _publish(staging, out) if report.passed else _reject(staging, out)
        return ExportResult(directory, manifest, report, conversion)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def gate(directory: Path, reference, manifest: Manifest, images=None, ann=None, budgets: Budgets | None = None,
         threads: int | None = None, progress=None, **runtime_options) -> ParityReport:
    """The parity gate for one export folder: same input tensors through ``reference`` and the artifact."""
    from .evaluate import CocoSet
    from .images import collect_images
    from .runtimes import open_export

    coco_set = CocoSet.load(images, ann) if ann else None
    if coco_set is not None:
        inputs = [path for _, path in coco_set.images]
    elif images is not None:
        inputs = collect_images([images])
    else:
        inputs = synthetic_images()
    artifact = open_export(directory, manifest, threads=threads, **runtime_options)
    advance = progress(f"parity {manifest.backend} {manifest.precision}", len(inputs)) if progress else None
    report = compare(reference, artifact, manifest.processing_config(), inputs, coco_set=coco_set,
                     progress=advance, detections=images is not None)
    report.artifact, report.precision = str(directory), manifest.precision  # export() sets the final place
    report.inputs = "synthetic" if images is None else "images"
    return report.apply(budgets or Budgets())


def _staging_folder(out: Path) -> Path:
    """A fresh folder beside ``out`` to build the export in (same file system: publishing is a rename)."""
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{out}: cannot write an export there ({folder} is a file, not a folder)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging."))
    except OSError as e:
        raise UsageError(f"{out}: cannot write an export there ({e.strerror})") from None


def _publish(staging: Path, out: Path) -> Path:
    """Move the staged export into ``out``: files first, manifest last; files of an older export go."""
    out.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(out).files.values() if (out / MANIFEST_NAME).is_file() else []
    staged = [p for p in staging.iterdir() if p.name != MANIFEST_NAME]
    for path in staged:
        path.replace(out / path.name)
    (staging / MANIFEST_NAME).replace(out / MANIFEST_NAME)
    for name in set(previous) - {p.name for p in staged}:
        (out / name).unlink(missing_ok=True)
    return out


def _reject(staging: Path, out: Path) -> Path:
    rejected = out / REJECTED_DIR
    shutil.rmtree(rejected, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    staging.replace(rejected)
    return rejected


def reject_in_place(directory: Path) -> Path:
    """Move a published export that failed ``verify`` into ``directory/rejected``."""
    manifest = read_manifest(directory)
    rejected = directory / REJECTED_DIR
    shutil.rmtree(rejected, ignore_errors=True)
    rejected.mkdir()
    for name in [*manifest.files.values(), MANIFEST_NAME, PARITY_NAME]:
        if (directory / name).exists():
            (directory / name).replace(rejected / name)
    return rejected


def verify_exports(directory: str | Path, images=None, ann=None, checkpoint=None, budgets: Budgets | None = None,
                   threads: int | None = None, progress=None, **runtime_options) -> list[tuple[Path, ParityReport]]:
    """The parity gate on an export folder, or on every export folder directly inside ``directory``."""
    from .model import load
    from .runtimes.torch import TorchRuntime

    directory = Path(directory)
    folders = [directory] if (directory / MANIFEST_NAME).is_file() else \
        sorted(p for p in directory.iterdir() if (p / MANIFEST_NAME).is_file()) if directory.is_dir() else []
    if not folders:
        read_manifest(directory)  # raises the precise error (no folder / no nanodet.json)
    results = []
    references = {}
    for folder in folders:
        manifest = read_manifest(folder)
        source = checkpoint or manifest.conversion.get("checkpoint")
        if source is None:
            raise UsageError(f"{folder}: the export records no checkpoint; pass --checkpoint")
        key = (str(source), manifest.model, manifest.input_width, manifest.input_height, manifest.keep_ratio)
        if key not in references:
            references[key] = load(source, spec=reference_spec(manifest))
        loaded = references[key]
        if loaded.sha256 != manifest.checkpoint_sha256:
            raise UsageError(f"{folder}: checkpoint {source} is not the one this export was made from "
                              f"(sha256 {loaded.sha256[:12]}… vs {manifest.checkpoint_sha256[:12]}…)")
        report = gate(folder, TorchRuntime(loaded.module, threads=threads), manifest, images, ann, budgets,
                      threads, progress, **runtime_options)
        results.append((folder, report))
    return results


def reference_spec(manifest: Manifest):
    """The architecture an export was made from, rebuilt from its manifest."""
    from .model import ModelSpec

    architecture = manifest.conversion.get("architecture")
    if not architecture:
        raise UsageError(f"export of {manifest.model} records no architecture")
    return ModelSpec(name=manifest.model, input_size=(manifest.input_width, manifest.input_height),
                     keep_ratio=manifest.keep_ratio, mean=tuple(manifest.mean), std=tuple(manifest.std),
                     class_names=tuple(manifest.class_names), **architecture)
