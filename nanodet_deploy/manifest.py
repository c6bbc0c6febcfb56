"""``nanodet.json``: the single description of an exported artifact. One function writes it, every runtime
reads it, so ``Detector.from_export(DIR)`` needs nothing else.

A manifest is untrusted input (a downloaded export folder, a shared drive): it is read under a size and
nesting limit, every field is type- and range-checked before use, the files it names are plain names inside
its folder, and each file's size and sha256 recorded at export are checked when the export is opened (measured
with a test suite busy on both cores, medians of 20: 8.7 ms for the 5.15 MB OpenVINO FP32 IR, 7.5 ms for the
4.86 MB ONNX FP32 model, 2.6 ms for the 1.51 MB ncnn INT8 files; about 1.7 ms per MB).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from .errors import ManifestError
from .files import open_regular, write_text_atomic
from .json_input import depth
from .processing import INPUT_FORMATS, MAX_INPUT_SIDE, ProcessingConfig

MANIFEST_NAME = "nanodet.json"
# what export and verify write beside the manifest (parity.ParityReport as JSON, and report.py's page of it)
PARITY_NAME = "parity.json"
REPORT_NAME = "report.html"
SCHEMA_VERSION = 2            # 2: per-file sha256 + size ("checksums"); 1 (no checksums) is still read
READABLE_SCHEMAS = (1, 2)
OUTPUT_LAYOUT = ("one tensor [B, N, C + 4*(reg_max+1)]: C sigmoid class scores, then 4 x (reg_max+1) "
                 "distance logits (left, top, right, bottom); N points stride 8 -> 64, row-major per level")

# Bounds a manifest must keep. Ours are ~3 KB with nesting depth 4; the limits leave room for a 1000-class
# model's names and long conversion records, and refuse the 250 MB / 10^5-deep files that cost GBs of memory.
MAX_MANIFEST_BYTES = 1 << 20
MAX_NESTING = 16
MAX_CLASSES = 1000
MAX_TEXT = 1000               # characters of any one string field
MAX_REG_MAX = 64
MAX_STRIDE = 1024
MAX_DETS_LIMIT = 10000
PRECISIONS = ("fp32", "fp16", "int8", "weight-int8")
COLOR_ORDERS = ("BGR",)                      # what processing.preprocess feeds
RESIZE_MODES = ("warpPerspective linear",)   # what processing.preprocess does
BATCH_MODES = ("1", "dynamic")
FAST_FP16 = ("allowed", "verified", "forbidden")


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
    precision: str                # "fp32", "fp16", "int8", "weight-int8"
    files: dict[str, str]         # role -> plain file name in the export folder, e.g. {"model": "model.onnx"}
    checkpoint_sha256: str
    score_thr: float = 0.05
    iou_thr: float = 0.6
    max_dets: int = 100
    color_order: str = "BGR"
    resize: str = "warpPerspective linear"
    input_format: str = "float-nchw"   # processing.INPUT_FORMATS: "bgr8-nhwc" when the model normalises itself
    input_name: str = "data"
    output_name: str = "output"
    output_layout: str = OUTPUT_LAYOUT
    batch: str = "1"              # "1", or "dynamic"
    versions: dict[str, str] = field(default_factory=dict)   # package -> version used to make it
    conversion: dict = field(default_factory=dict)           # options: opset, calibration, excluded nodes...
    checksums: dict[str, dict] = field(default_factory=dict)  # file name -> {"sha256": hex, "bytes": size}
    # the Android app's "Fast fp16" switch (ncnn exports): "allowed" (not measured), "verified" or "forbidden"
    # (over the gate's budgets on the emulated phone, `export --arch arm64`; the app then keeps it off), and why
    fast_fp16: str = "allowed"
    fast_fp16_note: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def processing_config(self) -> ProcessingConfig:
        return ProcessingConfig(input_size=(self.input_width, self.input_height), num_classes=self.num_classes,
                                strides=tuple(self.strides), reg_max=self.reg_max, mean=tuple(self.mean),
                                std=tuple(self.std), keep_ratio=self.keep_ratio, score_thr=self.score_thr,
                                iou_thr=self.iou_thr, max_dets=self.max_dets)

    @classmethod
    def from_spec(cls, spec, processing: ProcessingConfig, **artifact) -> "Manifest":
        """The manifest of an artifact of ``spec``: the model and processing fields from the spec and its
        processing config (the one place they are mapped), the rest (backend, precision, files, ...) given."""
        return cls(model=spec.name, class_names=list(spec.class_names), input_width=processing.input_size[0],
                   input_height=processing.input_size[1], mean=list(processing.mean), std=list(processing.std),
                   keep_ratio=processing.keep_ratio, strides=list(processing.strides), reg_max=processing.reg_max,
                   score_thr=processing.score_thr, iou_thr=processing.iou_thr, max_dets=processing.max_dets,
                   **artifact)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> "Manifest":
        try:
            data = json.loads(text)
        except RecursionError:
            raise ManifestError(f"{source}: nested more than {MAX_NESTING} levels deep") from None
        except ValueError as e:
            raise ManifestError(f"{source}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: not a nanodet-deploy manifest")
        if depth(data, MAX_NESTING + 1) > MAX_NESTING:
            raise ManifestError(f"{source}: nested more than {MAX_NESTING} levels deep")
        if data.get("schema_version") not in READABLE_SCHEMAS:
            raise ManifestError(f"{source}: manifest schema {data.get('schema_version')!r}, this version reads "
                                f"{', '.join(map(str, READABLE_SCHEMAS))}")
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ManifestError(f"{source}: missing {', '.join(missing)}")
        manifest = cls(**{k: v for k, v in data.items() if k in known})
        manifest.validate(source)
        return manifest

    def validate(self, source: str = MANIFEST_NAME) -> None:
        """Every field's type and range; the first problems found are named."""
        problems = [p for p in _problems(self) if p]
        if problems:
            raise ManifestError(f"{source}: invalid manifest ({'; '.join(problems[:4])})")


def _is_int(value, low, high) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value, low, high, low_open=False, high_open=False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (low < value if low_open else low <= value) and (value < high if high_open else value <= high)


def _is_text(value, length: int = MAX_TEXT) -> bool:
    return isinstance(value, str) and len(value) <= length


def is_plain_name(name) -> bool:
    """A file name that stays in its folder: no separators, no '..', not absolute, printable."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and name not in (".", "..") and "/" not in name
            and "\\" not in name and name.isprintable())


def _problems(m: Manifest):
    yield None if _is_text(m.model, 200) else "model must be a name"
    if not (isinstance(m.class_names, list) and 1 <= len(m.class_names) <= MAX_CLASSES
            and all(_is_text(c, 200) for c in m.class_names)):
        yield f"class_names must be 1 to {MAX_CLASSES} names"
    if not (_is_int(m.input_width, 1, MAX_INPUT_SIDE) and _is_int(m.input_height, 1, MAX_INPUT_SIDE)):
        yield f"input size {m.input_width!r}x{m.input_height!r} (1 to {MAX_INPUT_SIDE} pixels a side)"
    for name, values, low in (("mean", m.mean, 0.0), ("std", m.std, 0.0)):
        if not (isinstance(values, list) and len(values) == 3
                and all(_is_number(v, low, 1e4, low_open=name == "std") for v in values)):
            yield f"{name} must be 3 finite numbers" + (" > 0" if name == "std" else "")
    yield None if isinstance(m.keep_ratio, bool) else "keep_ratio must be true or false"
    if not (isinstance(m.strides, list) and 1 <= len(m.strides) <= 8
            and all(_is_int(s, 1, MAX_STRIDE) for s in m.strides)
            and all(a < b for a, b in zip(m.strides, m.strides[1:]))):
        yield "strides must be 1 to 8 increasing whole numbers"
    yield None if _is_int(m.reg_max, 1, MAX_REG_MAX) else f"reg_max must be 1 to {MAX_REG_MAX}"
    yield None if _is_text(m.backend, 50) else "backend must be a name"
    yield None if m.precision in PRECISIONS else f"precision must be one of {', '.join(PRECISIONS)}"
    files_ok = isinstance(m.files, dict) and "model" in m.files and len(m.files) <= 8
    if not files_ok:
        yield "files must name the model file"
    else:
        bad = [n for role, n in m.files.items() if not (_is_text(role, 50) and is_plain_name(n))
               or n == MANIFEST_NAME]
        files_ok = not bad
        yield f"file {bad[0]!r} is not a plain file name inside the export folder" if bad else None
    yield None if _is_text(m.checkpoint_sha256, 128) else "checkpoint_sha256 must be text"
    yield None if _is_number(m.score_thr, 0, 1, high_open=True) else "score_thr must be in [0, 1)"
    yield None if _is_number(m.iou_thr, 0, 1, low_open=True) else "iou_thr must be in (0, 1]"
    yield None if _is_int(m.max_dets, 1, MAX_DETS_LIMIT) else f"max_dets must be 1 to {MAX_DETS_LIMIT}"
    yield None if m.color_order in COLOR_ORDERS else f"color_order {m.color_order!r} (this version feeds BGR)"
    yield None if m.resize in RESIZE_MODES else f"resize {m.resize!r} (this version resizes by {RESIZE_MODES[0]})"
    yield None if m.input_format in INPUT_FORMATS else f"input_format must be one of {', '.join(INPUT_FORMATS)}"
    for name in ("input_name", "output_name", "output_layout"):
        yield None if _is_text(getattr(m, name)) else f"{name} must be text"
    yield None if m.batch in BATCH_MODES else "batch must be \"1\" or \"dynamic\""
    if not (isinstance(m.versions, dict) and all(_is_text(k, 100) and _is_text(v, 100) for k, v in m.versions.items())):
        yield "versions must map package names to versions"
    yield None if isinstance(m.conversion, dict) else "conversion must be an object"
    yield None if m.fast_fp16 in FAST_FP16 else f"fast_fp16 must be one of {', '.join(FAST_FP16)}"
    yield None if _is_text(m.fast_fp16_note) else "fast_fp16_note must be text"
    if not isinstance(m.checksums, dict) or not all(
            isinstance(c, dict) and _is_text(c.get("sha256"), 64) and _is_int(c.get("bytes"), 0, 1 << 40)
            for c in m.checksums.values()):
        yield "checksums must map file names to {sha256, bytes}"
    elif files_ok and not set(m.checksums) <= set(m.files.values()):
        yield "checksums name files that are not listed"
    if not isinstance(m.schema_version, int):
        yield "schema_version must be a number"


def file_checksum(source) -> dict:
    """{"sha256", "bytes"} of a file: a path, or an open binary file (read from its start)."""
    digest = hashlib.sha256()
    size = 0
    with (open(source, "rb") if isinstance(source, (str, Path)) else contextlib.nullcontext(source)) as f:
        f.seek(0)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


def inside(directory: Path, name: str, role: str = "") -> Path:
    """``directory / name`` if it is a regular file that really lies in ``directory`` (a symlink may point
    within the folder, never out of it); ManifestError otherwise."""
    path = directory / name
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise ManifestError(f"{directory / MANIFEST_NAME}: {role + ' ' if role else ''}file {name} is missing") \
            from None
    if stat.S_ISLNK(info.st_mode):
        target = path.resolve()
        if target.parent != directory.resolve():
            raise ManifestError(f"{path}: a link to {target}, outside the export folder: refused")
        info = target.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ManifestError(f"{path}: not a regular file")
    return path


def write_manifest(directory: str | Path, manifest: Manifest) -> Path:
    """Record every listed file's size and sha256, check the manifest, and write it (atomically)."""
    directory = Path(directory)
    manifest.checksums = {name: file_checksum(inside(directory, name)) for name in manifest.files.values()}
    manifest.schema_version = SCHEMA_VERSION
    manifest.validate()
    path = directory / MANIFEST_NAME
    write_text_atomic(path, manifest.to_json() + "\n")
    return path


def read_manifest(directory: str | Path, check_files: bool = True) -> Manifest:
    """The manifest of an export folder, validated. With ``check_files`` (default) every file it lists must be
    a regular file inside the folder with the size and sha256 recorded at export."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ManifestError(f"{directory}: no such export folder")
    if not path.exists() and not path.is_symlink():
        hint = f" (a rejected export is in {directory / 'rejected'})" if (directory / "rejected").is_dir() else ""
        raise ManifestError(f"{directory}: no {MANIFEST_NAME} — not an export folder{hint}")
    inside(directory, MANIFEST_NAME)
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {size / 1e6:.1f} MB, over the {MAX_MANIFEST_BYTES >> 20} MiB a manifest "
                            f"may have: not a nanodet-deploy manifest")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not valid JSON (not UTF-8 text)") from None
    manifest = Manifest.from_json(text, source=str(path))
    if check_files:
        check_files_of(directory, manifest)
    return manifest


@contextlib.contextmanager
def pinned_files(directory: str | Path, manifest: Manifest):
    """{role: path} for the runtime to load, each naming the very file whose bytes were checked.

    Each listed file is opened once and checked through that descriptor (a regular file with the size and
    sha256 nanodet.json records); while the block runs the runtime loads it as ``/proc/self/fd/N``, the same open
    file. Checking a path and then opening the path again ran an unchecked model when the file was swapped in
    between (4 of 12 runs under a fast rename loop, issue 29). Without /proc (not Linux) the paths are the
    folder's, checked just before: the window remains there (README, "Bad input")."""
    directory = Path(directory)
    if not Path("/proc/self/fd").is_dir():
        check_files_of(directory, manifest)
        yield {role: directory / name for role, name in manifest.files.items()}
        return
    with contextlib.ExitStack() as stack:
        pinned = {}
        for role, name in manifest.files.items():
            file = stack.enter_context(open_regular(inside(directory, name, role)))
            size = os.fstat(file.fileno()).st_size
            recorded = manifest.checksums.get(name)
            if recorded is not None and size != recorded["bytes"]:  # no hashing of a wrong-sized file
                _check_checksum(directory / name, role, manifest, {"bytes": size, "sha256": None})
            _check_checksum(directory / name, role, manifest, file_checksum(file))
            pinned[role] = Path(f"/proc/self/fd/{file.fileno()}")
        yield pinned


def _check_checksum(path: Path, role: str, manifest: Manifest, found: dict) -> None:
    recorded = manifest.checksums.get(path.name)
    if recorded is None:
        if manifest.schema_version == 1:
            return  # made before checksums were recorded
        raise ManifestError(f"{path.parent / MANIFEST_NAME}: records no checksum for its {role} file {path.name}")
    if found["bytes"] != recorded["bytes"]:
        raise ManifestError(f"{path}: {found['bytes']} bytes, nanodet.json records {recorded['bytes']}: the {role} "
                            f"file changed or was damaged after export")
    if found["sha256"] != recorded["sha256"]:
        raise ManifestError(f"{path}: sha256 differs from the one nanodet.json records: the {role} file "
                            f"changed or was damaged after export")


def check_files_of(directory: Path, manifest: Manifest) -> None:
    """Each listed file: a regular file inside ``directory``, and (schema 2) the size and sha256 recorded."""
    for role, name in manifest.files.items():
        path = inside(directory, name, role)
        recorded = manifest.checksums.get(name)
        if recorded is not None and path.stat().st_size != recorded["bytes"]:  # no hashing of a wrong-sized file
            _check_checksum(path, role, manifest, {"bytes": path.stat().st_size, "sha256": None})
        _check_checksum(path, role, manifest, file_checksum(path) if recorded is not None else {})


def package_versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("nanodet-deploy", *packages):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
