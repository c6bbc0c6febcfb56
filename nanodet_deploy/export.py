"""``export()``: checkpoint -> artifact in a target format and precision -> manifest -> parity gate.

Everything is built in a staging folder inside ``out`` (the same file system even when ``out`` is a mount
point, so publishing is a rename) and moved into place only when the parity gate passes; an artifact over
budget goes to ``out/rejected/`` (with its parity.json) and a previous good export in ``out`` stays untouched.
Temporary files of the converters and libraries go inside the staging folder too, and all of it is removed on
any failure, Ctrl-C or SIGTERM. Only files inside ``out`` are ever replaced or deleted.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .files import temporary_files_in
from .manifest import (MANIFEST_NAME, PARITY_NAME, REPORT_NAME, Manifest, ManifestError, file_checksum,
                       is_plain_name, package_versions, read_manifest, write_manifest)
from .parity import Budgets, ParityReport, compare, synthetic_images, write_report
from .processing import FLOAT_NCHW
from .report import parity_page
from .targets import APP_BACKEND

REJECTED_DIR = "rejected"


@dataclass
class ExportResult:
    directory: Path          # where the artifact is: ``out``, or ``out/rejected`` when the gate failed
    manifest: Manifest
    report: ParityReport
    conversion: dict
    summary: str = ""        # the converter's one line on what it made
    phone: list = field(default_factory=list)  # phone.PhoneReport per CPU model x app mode (phone_cpus)
    warnings: list = field(default_factory=list)  # one line each, e.g. an INT8 bench measured slower than FP32

    @property
    def accepted(self) -> bool:
        return self.report.passed


def export(checkpoint, to: str = "onnxruntime", out: str | Path = "export", model: str | None = None,
           config: str | Path | None = None, input_size: tuple[int, int] | None = None,
           keep_ratio: bool | None = None, precision: str = "fp32", calib: str | Path | None = None,
           calib_images: int = 100, calib_method: str | None = None, keep_float=None, opset: int | None = None,
           dynamic_batch: bool = False, verify_images: str | Path | None = None,
           verify_ann: str | Path | None = None, budgets: Budgets | None = None, threads: int | None = None,
           infer_precision: str | None = None, unsafe_load: bool = False, u8_input: bool = False,
           progress=None, html_report: bool = True, phone_cpus=None) -> ExportResult:
    """Export ``checkpoint`` to target ``to`` (a name in ``nanodet_deploy.targets.TARGETS``) in ``precision``
    under ``out`` and gate it against PyTorch.

    ``precision`` is one the target makes ("fp32", "fp16", "int8"; MNN also "weight-int8": INT8 weights,
    float activations). ``keep_float`` names the parts INT8 keeps in float and ``calib_method`` how INT8 ranges
    are calibrated (both default per target, chosen by measured mAP; ``keep_float=()`` for none); ``opset`` and
    ``dynamic_batch`` apply to the ONNX-based targets. An option the target does not take is a UsageError.
    ``infer_precision`` ("fp32" / "bf16", OpenVINO) is how the gate runs the artifact. ``u8_input`` (OpenVINO)
    puts the normalisation into the model: it takes the warped 8-bit image (manifest ``input_format``).
    ``progress(description, total)`` returns a callable to advance a progress bar (the CLI passes rich's).
    ``html_report`` writes ``report.html`` (nanodet_deploy.report) beside ``parity.json``. ``phone_cpus`` (ncnn):
    the accepted export also through the Android app's detector on ncnn's ARM64 kernels, emulated per CPU model
    (``phone_gate``); its reports go into parity.json and ``ExportResult.phone``. The app's default mode over
    budget on a CPU model rejects the export; the "Fast fp16" modes set the manifest's ``fast_fp16``.
    """
    from .converters.calibration import calibration_images, check_keep_float
    from .targets import check_options, get_target

    target = get_target(to)
    options = {"opset": opset, "dynamic_batch": dynamic_batch or None, "calib_method": calib_method,
               "keep_float": None if keep_float is None else tuple(keep_float), "u8_input": u8_input or None}
    check_options(target, precision, options)
    if phone_cpus:
        from .phone import check_ready

        if target.name != APP_BACKEND:
            raise UsageError(f"--arch arm64 needs --to ncnn (the Android app runs ncnn), not --to {to}")
        check_ready(phone_cpus)
    converter = target.converter_module()  # a missing backend package fails here, before any work
    if options["calib_method"] is not None and calib_method not in converter.CALIBRATION_METHODS:
        raise UsageError(f"--to {to} calibration methods: {', '.join(converter.CALIBRATION_METHODS)} "
                         f"(got '{calib_method}')")
    if options["keep_float"] is not None:
        check_keep_float(options["keep_float"], converter.FLOAT_PARTS, "auto" in converter.DEFAULT_FLOAT_PARTS)
    if precision == "int8" and calib is None:
        raise UsageError("--int8 needs calibration images: --calib DIR")
    calib_paths = calibration_images(calib, calib_images) if precision == "int8" else []
    if verify_images is not None:
        gate_inputs(verify_images, verify_ann)  # a missing or unreadable image set fails here, not after converting
    budgets = budgets or Budgets()
    out = Path(out)
    created = not out.exists()
    staging = _staging_folder(out)  # an unwritable destination fails here, before any work
    try:
        from .model import load  # PyTorch: imported once the options have been checked

        loaded = load(checkpoint, model=model, config=config, input_size=input_size, keep_ratio=keep_ratio,
                      unsafe=unsafe_load)
        processing = loaded.spec.processing_config()
        warnings = [w for w in [int8_slower(target.backend, processing.input_size, threads)] if w] \
            if precision == "int8" else []
        with temporary_files_in(staging / ".tmp"), _naming(out):
            files, conversion = converter.convert(
                loaded.module, processing, staging, precision=precision, calib_paths=calib_paths, progress=progress,
                **{name: value for name, value in options.items() if value is not None})
        shutil.rmtree(staging / ".tmp", ignore_errors=True)
        manifest = Manifest.from_spec(
            loaded.spec, processing, backend=target.backend, precision=precision, files=files,
            input_format=conversion.get("input_format", FLOAT_NCHW),
            checkpoint_sha256=loaded.sha256, batch="dynamic" if dynamic_batch else "1",
            versions=package_versions(*target.packages),
            conversion={"target": target.name, "checkpoint": str(Path(loaded.checkpoint).resolve()),
                        "architecture": loaded.spec.architecture(), **conversion})
        with _naming(out):
            converter.embed_manifest(staging / files["model"], manifest.to_json())
            write_manifest(staging, manifest)
        from .runtimes.torch import TorchRuntime

        # INT8 is always gated on real images: without --verify-images, on the calibration images (its label-free
        # floors need real content; on synthetic noise a broken calibration scores like a good one)
        on_calibration = precision == "int8" and verify_images is None
        reference = TorchRuntime(loaded.module, threads=threads)
        gate_images = calib_paths if on_calibration else verify_images
        report = gate(staging, reference, manifest, gate_images, verify_ann, budgets, threads, progress,
                      infer_precision=infer_precision)
        if on_calibration:
            report.inputs = "calibration images"
        phone = phone_gate(staging, reference, manifest, phone_cpus, gate_images, verify_ann, budgets, threads,
                           progress) if phone_cpus and report.passed else []
        if phone:
            _apply_phone(report, phone, manifest)
            write_manifest(staging, manifest)
        report.artifact = str(out if report.passed else out / REJECTED_DIR)  # where it is about to go
        for phone_report in phone:
            phone_report.gate.artifact = report.artifact
        write_report(staging / PARITY_NAME, [report], budgets, phone)
        if html_report:
            parity_page(staging / PARITY_NAME, images=calib_paths if on_calibration else verify_images,
                        label=report.artifact)
        directory = _publish(staging, out) if report.passed else _reject(staging, out)
        return ExportResult(directory, manifest, report, conversion, converter.describe(conversion), phone,
                            warnings)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed first export leaves no empty folder behind


def int8_slower(backend: str, input_size, threads: int | None) -> str | None:
    """The warning for an INT8 that ``bench`` measured slower than FP32 on this machine (int8_speed), or None."""
    from .int8_speed import slower_warning
    from .machine import machine

    return slower_warning(backend, tuple(input_size), threads, machine())


def gate(directory: Path, reference, manifest: Manifest, images=None, ann=None, budgets: Budgets | None = None,
         threads: int | None = None, progress=None, **runtime_options) -> ParityReport:
    """The parity gate for one export folder: same input tensors through ``reference`` and the artifact."""
    from .runtimes import open_export

    inputs, coco_set = gate_inputs(images, ann)
    artifact = open_export(directory, manifest, threads=threads, **runtime_options)
    advance = progress(f"parity {manifest.backend} {manifest.precision}", len(inputs)) if progress else None
    report = compare(reference, artifact, manifest.processing_config(), inputs, coco_set=coco_set,
                     progress=advance, detections=images is not None)
    report.artifact, report.precision = str(directory), manifest.precision  # export() sets the final place
    report.inputs = "synthetic" if images is None else "images"
    return report.apply(budgets or Budgets())


def gate_inputs(images=None, ann=None) -> tuple[list, object]:
    """(the gate's inputs: image paths, or seeded noise images without ``images``; the CocoSet with ``ann``)."""
    from .evaluate import CocoSet
    from .images import collect_images

    coco_set = CocoSet.load(images, ann) if ann else None
    if coco_set is not None:
        return [path for _, path in coco_set.images], coco_set
    if images is not None:
        return (list(images) if isinstance(images, (list, tuple)) else collect_images([images])), None
    return synthetic_images(), None


def phone_gate(directory: Path, reference, manifest: Manifest, cpus, images=None, ann=None,
               budgets: Budgets | None = None, threads: int | None = None, progress=None) -> list:
    """The gate's checks on the emulated phone (phone.py): the app's detector on ncnn's ARM64 kernels for each
    CPU model of ``cpus`` in each mode the app offers, on the gate's images."""
    from .phone import compare_on_phone

    inputs, coco_set = gate_inputs(images, ann)
    return compare_on_phone(directory, manifest, reference, inputs, cpus=cpus, coco_set=coco_set, budgets=budgets,
                            threads=threads, progress=progress, detections=images is not None)


def _apply_phone(report: ParityReport, phone: list, manifest: Manifest) -> None:
    """The emulated phone's verdict, part of an export's gate: the app's default mode over budget on a CPU model
    fails the export (a "phone" check); the "Fast fp16" modes set the manifest's ``fast_fp16``."""
    from .phone import fast_fp16_verdict

    failed = [p for p in phone if p.required and not p.passed]
    report.checks.append({"metric": "phone", "budget": "the gate's budgets on the emulated phone", "value": None,
                          "passed": not failed,
                          "note": "; ".join(f"{p.cpu} {p.mode} over budget" for p in failed) or
                                  f"{len({p.cpu for p in phone})} CPU models, the app's default mode"})
    report.passed = report.passed and not failed
    manifest.fast_fp16, manifest.fast_fp16_note = fast_fp16_verdict(phone)


STAGING_PREFIX = ".staging."


def _staging_folder(out: Path) -> Path:
    """A fresh hidden folder inside ``out`` to build the export in: the same file system as the destination
    even when ``out`` is a mount point, so publishing is a rename; creating it is also the check that ``out``
    is writable, made before any work."""
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{out}: cannot write an export there ({folder} is a file, not a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out, prefix=STAGING_PREFIX))
    except OSError as e:
        raise UsageError(f"{out}: cannot write an export there ({e.strerror})") from None


@contextlib.contextmanager
def _naming(out: Path):
    """A file-system error without a file name (a full disk inside a library's writer) names the export."""
    try:
        yield
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, f"{e.strerror or e} (while writing the export)", str(out)) from None


def _previous_files(out: Path) -> list[str]:
    """Plain names of the files an earlier export in ``out`` lists; none when its manifest is unreadable or
    names anything that is not a plain name inside ``out`` (such a manifest is not ours to act on)."""
    try:
        return list(read_manifest(out, check_files=False).files.values())
    except ManifestError:
        return []


def _clear(path: Path) -> None:
    """Remove ``path`` (a folder inside an export folder) without following a symlink out of it."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _publish(staging: Path, out: Path) -> Path:
    """Move the staged export into ``out``: files first, manifest last; files of an older export go (only
    plain names inside ``out``: a rename or unlink replaces a symlink itself, never what it points to)."""
    previous = _previous_files(out) if (out / MANIFEST_NAME).is_file() else []
    staged = [p for p in staging.iterdir() if p.name != MANIFEST_NAME]
    for path in staged:
        path.replace(out / path.name)
    (staging / MANIFEST_NAME).replace(out / MANIFEST_NAME)
    for name in set(previous) - {p.name for p in staged} - {MANIFEST_NAME, PARITY_NAME, REPORT_NAME, REJECTED_DIR}:
        if is_plain_name(name):
            (out / name).unlink(missing_ok=True)
    return out


def _reject(staging: Path, out: Path) -> Path:
    rejected = out / REJECTED_DIR
    _clear(rejected)
    staging.replace(rejected)
    return rejected


def reject_in_place(directory: Path) -> Path:
    """Move a published export that failed ``verify`` into ``directory/rejected`` (its listed files, all
    checked to be inside ``directory``, its manifest and its parity.json)."""
    manifest = read_manifest(directory)
    rejected = directory / REJECTED_DIR
    _clear(rejected)
    rejected.mkdir()
    for name in [*manifest.files.values(), MANIFEST_NAME, PARITY_NAME, REPORT_NAME]:
        if (directory / name).exists() or (directory / name).is_symlink():
            (directory / name).replace(rejected / name)
    return rejected


def verify_exports(directory: str | Path, images=None, ann=None, checkpoint=None, budgets: Budgets | None = None,
                   threads: int | None = None, progress=None, phone_cpus=None,
                   **runtime_options) -> list[tuple[Path, ParityReport, list]]:
    """The parity gate on an export folder, or on every export folder directly inside ``directory``; with
    ``phone_cpus`` also on the emulated phone (``phone_gate``; ncnn exports), whose reports are the third item."""
    from .model import load
    from .runtimes.torch import TorchRuntime

    directory = Path(directory)
    folders = [directory] if (directory / MANIFEST_NAME).is_file() else \
        sorted(p for p in directory.iterdir() if (p / MANIFEST_NAME).is_file()) if directory.is_dir() else []
    if not folders:
        read_manifest(directory)  # raises the precise error (no folder / no nanodet.json)
    if phone_cpus:
        from .phone import check_ready

        check_ready(phone_cpus)
        if not any(read_manifest(folder).backend == APP_BACKEND for folder in folders):
            raise UsageError(f"{directory}: --arch arm64 runs ncnn exports on the emulated phone; "
                             f"no ncnn export here")
    results = []
    references = {}
    for folder in folders:
        manifest = read_manifest(folder)
        source = checkpoint or recorded_checkpoint(folder, manifest)
        key = (str(source), manifest.model, manifest.input_width, manifest.input_height, manifest.keep_ratio)
        if key not in references:
            try:
                references[key] = load(source, spec=reference_spec(manifest, folder))
            except (TypeError, ValueError, KeyError) as e:  # the model's constructors refused the arguments
                raise architecture_error(folder, e) from None
        loaded = references[key]
        if loaded.sha256 != manifest.checkpoint_sha256:
            raise UsageError(f"{folder}: checkpoint {source} is not the one this export was made from "
                              f"(sha256 {loaded.sha256[:12]}… vs {manifest.checkpoint_sha256[:12]}…)")
        reference = TorchRuntime(loaded.module, threads=threads)
        report = gate(folder, reference, manifest, images, ann, budgets, threads, progress, **runtime_options)
        phone = phone_gate(folder, reference, manifest, phone_cpus, images, ann, budgets, threads, progress) \
            if phone_cpus and manifest.backend == APP_BACKEND else []
        results.append((folder, report, phone))
    return results


@dataclass
class VerifyResult:
    folder: Path                  # the export folder verified
    report: ParityReport
    moved_to: Path | None = None  # its rejected/ folder when it failed and was moved there
    phone: list = field(default_factory=list)  # phone.PhoneReport per CPU model x app mode (--arch arm64)

    @property
    def phone_passed(self) -> bool:
        """The app's default mode kept the budgets on every emulated CPU model (fast fp16 is reported only)."""
        return all(p.passed for p in self.phone if p.required)


def verify(directory: str | Path, images=None, ann=None, checkpoint=None, budgets: Budgets | None = None,
           threads: int | None = None, progress=None, infer_precision: str | None = None,
           html_report: bool = True, phone_cpus=None) -> list[VerifyResult]:
    """The parity gate again on an export folder (or every export folder inside ``directory``), with its policy:
    each report is written to ``parity.json``; an artifact over budget is moved to ``FOLDER/rejected/`` (its
    parity.json with it) — except under a chosen ``infer_precision``, whose failure is the execution mode's, not
    the artifact's: it stays in place. ``phone_cpus``: the gate also on the emulated phone (ncnn exports; its
    reports go into parity.json's "phone" list; a failure there is the phone mode's and leaves the artifact in
    place)."""
    budgets = budgets or Budgets()
    results = []
    for folder, report, phone in verify_exports(directory, images, ann, checkpoint, budgets, threads, progress,
                                                phone_cpus=phone_cpus, infer_precision=infer_precision):
        moved = None if report.passed or infer_precision else reject_in_place(folder)
        write_report((moved or folder) / PARITY_NAME, [report], budgets, phone)
        if html_report:
            parity_page((moved or folder) / PARITY_NAME, images=images, label=str(moved or folder))
        results.append(VerifyResult(folder, report, moved, phone))
    return results


def verify_outcome(results: list[VerifyResult], infer_precision: str | None = None) -> tuple[list[str], bool]:
    """What ``verify`` says after its tables — which exports were rejected (moved), over budget in an execution
    mode or on the emulated phone (left in place), or carry a Fast fp16 the app must keep off — and whether it
    failed (exit 1)."""
    lines = []
    rejected = [str(r.moved_to) for r in results if r.moved_to]
    failed = [str(r.folder) for r in results if not r.report.passed]
    if rejected:
        lines.append(f"rejected (over budget, moved): {', '.join(rejected)}")
    elif failed:
        lines.append(f"over budget with --infer-precision {infer_precision} (artifacts left in place): "
                     f"{', '.join(failed)}")
    phone_failed = [str(r.folder) for r in results if not r.phone_passed]
    if phone_failed:
        lines.append(f"over budget on the emulated phone in the app's default mode (left in place): "
                     f"{', '.join(phone_failed)}")
    fast_over = sorted({str(r.folder) for r in results for p in r.phone if not p.required and not p.passed})
    if fast_over:
        lines.append(f"note: the app's Fast fp16 is over budget for {', '.join(fast_over)}; `export --arch arm64` "
                     f"records that in nanodet.json (fast_fp16: forbidden) and the app keeps it off")
    return lines, bool(failed or phone_failed)


def recorded_checkpoint(folder: Path, manifest: Manifest) -> Path:
    """The checkpoint file the export records, used as the reference only if it is a regular file with the
    recorded sha256 (checked before anything unpickles it: a manifest is untrusted and may name any path)."""
    import stat

    source = manifest.conversion.get("checkpoint")
    if not isinstance(source, str) or not source:
        raise UsageError(f"{folder}: the export records no checkpoint; pass --checkpoint")
    path = Path(source)
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError:
        regular = False
    if not regular:
        raise UsageError(f"{folder}: the checkpoint it was made from ({source}) is not a file here; "
                         f"pass --checkpoint")
    if file_checksum(path)["sha256"] != manifest.checkpoint_sha256:
        raise UsageError(f"{folder}: {source} is no longer the checkpoint this export was made from (sha256 "
                         f"differs); pass --checkpoint")
    return path


# What a recorded architecture may ask for: the keys ModelSpec takes, and numbers no larger than any NanoDet
# (the 1.5x backbone's widest stage has 1024 channels); a tampered manifest cannot make us allocate a giant.
ARCHITECTURE_KEYS = {"backbone", "fpn", "head"}
ARCHITECTURE_MAX_NUMBER = 4096


def reference_spec(manifest: Manifest, folder: Path | str = "export"):
    """The architecture an export was made from, rebuilt from its manifest."""
    from .model import ModelSpec

    architecture = manifest.conversion.get("architecture")
    if not architecture:
        raise UsageError(f"{folder}: export of {manifest.model} records no architecture")

    def numbers(node):
        if isinstance(node, dict):
            return [n for v in node.values() for n in numbers(v)]
        if isinstance(node, list):
            return [n for v in node for n in numbers(v)]
        return [node] if isinstance(node, (int, float)) else []

    if not (isinstance(architecture, dict) and set(architecture) == ARCHITECTURE_KEYS
            and all(isinstance(v, dict) for v in architecture.values())
            and all(abs(n) <= ARCHITECTURE_MAX_NUMBER for n in numbers(architecture))):
        raise ManifestError(f"{folder}: the recorded architecture is not a NanoDet-Plus one")
    try:
        return ModelSpec(name=manifest.model, input_size=(manifest.input_width, manifest.input_height),
                         keep_ratio=manifest.keep_ratio, mean=tuple(manifest.mean), std=tuple(manifest.std),
                         class_names=tuple(manifest.class_names), **architecture)
    except (TypeError, ValueError, KeyError) as e:
        raise architecture_error(folder, e) from None


def architecture_error(folder, error: Exception) -> ManifestError:
    return ManifestError(f"{folder}: the recorded architecture cannot be built "
                         f"({type(error).__name__}: {str(error)[:120]})")
