"""What ``bench`` measures: its cells (backend x precision x input size x threads), the plan of them the
registry allows, each cell's export — made once and cached by checkpoint hash, export options and the toolkit's
code, so a second run converts nothing and a changed recipe converts again — and the runtime that runs it."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UsageError
from .targets import BACKENDS, REFERENCE, TARGETS, get_backend


def all_precisions() -> tuple[str, ...]:
    """Every precision a cell can have: what targets export, and the execution modes (bf16) of FP32 artifacts."""
    return ("fp32", "fp16", "int8", *sorted({m for t in TARGETS.values() for m in t.execution_modes}))


@dataclass(frozen=True)
class Cell:
    backend: str
    precision: str   # fp32 / fp16 / int8; bf16 = OpenVINO's FP32 IR executed in bf16
    size: tuple[int, int]
    threads: int

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision} {self.size[0]}x{self.size[1]} t{self.threads}"

    @property
    def export_precision(self) -> str:
        """What is exported: an execution mode (bf16) runs the FP32 artifact."""
        return "fp32" if self.precision in BACKENDS[self.backend].execution_modes else self.precision


@dataclass
class CellResult:
    cell: Cell
    ran: str = ""                      # what the runtime says it executes
    accepted: bool | None = None       # the export's parity verdict (None for torch)
    agreement: float | None = None     # the gate's agreement with PyTorch (detections >= 0.3 at IoU >= 0.9)
    agreement_interval: list[float] | None = None  # its 90% bootstrap interval over the gate's images
    export_dir: str | None = None
    size_mb: float | None = None
    preprocess_ms: dict = field(default_factory=dict)   # median / p90 / min
    inference_ms: dict = field(default_factory=dict)
    postprocess_ms: dict = field(default_factory=dict)
    total_ms: dict = field(default_factory=dict)
    gflops_per_s: float | None = None
    peak_rss_mb: float | None = None
    map: float | None = None
    fps_sequential: float | None = None   # --mode throughput
    fps_pipelined: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("cell"))
        d["size"] = list(self.cell.size)
        return d


def plan(backends, precisions, sizes, threads) -> list[Cell]:
    """Every meaningful cell: the reference runs FP32 only; an execution mode (bf16) only where a target has it."""
    backends = [get_backend(name).name for name in backends]  # an alias (onnx) is its backend
    for p in precisions:
        if p not in all_precisions():
            raise UsageError(f"unknown precision '{p}' (available: {', '.join(all_precisions())})")
    def runs(backend, precision):
        row = BACKENDS[backend]
        return precision in row.execution_modes or precision in row.precisions

    return [Cell(b, p, s, t) for s in sizes for t in threads for b in backends for p in precisions if runs(b, p)]


def takes_u8_input(cell: Cell) -> bool:
    """Whether ``cell``'s export can take the 8-bit image (``export --u8-input``)."""
    return cell.backend != REFERENCE.name and "u8_input" in TARGETS[cell.backend].options


PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def code_digest(package: Path = PACKAGE) -> str:
    """Digest of every .py file of the package (path and content): a cached export was made by this code. Without
    it a bench work folder kept across an upgrade (or a recipe change) would time and score the old artifacts."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def export_key(checkpoint_sha256: str, cell: Cell, calib: Path | None, verify_ann: Path | None = None,
               u8_input: bool = False) -> str:
    """Folder name of a cached export: the checkpoint, every option that changes the artifact, the annotations
    its parity verdict was measured on, and the code that made it."""
    options = {"target": cell.backend, "size": cell.size, "precision": cell.export_precision,
               "calib": str(Path(calib).resolve()) if calib and cell.export_precision == "int8" else None,
               "verified_on": str(Path(verify_ann).resolve()) if verify_ann else None, "code": code_digest()}
    if u8_input:
        options["u8_input"] = True
    digest = hashlib.sha256(json.dumps([checkpoint_sha256, options], sort_keys=True).encode()).hexdigest()[:12]
    return f"{cell.backend}-{cell.size[0]}x{cell.size[1]}-{cell.export_precision}-{digest}"


def cached_export(export_root: Path, loaded, checkpoint, cell: Cell, calib, model=None, config=None,
                  images=None, ann=None, progress=None, u8_input: bool = False) -> tuple[Path, bool]:
    """(export folder, accepted) for ``cell``, exporting only when no cached export exists. With ``images`` +
    ``ann`` the parity gate measures mAP (INT8's budget is a mAP drop: without annotations it is unchecked). A
    rejected export (over its budget) is benchmarked all the same and reported as rejected."""
    from .export import REJECTED_DIR, export
    from .manifest import MANIFEST_NAME

    u8_input = u8_input and takes_u8_input(cell)
    folder = export_root / export_key(loaded.sha256, cell, calib, ann, u8_input)
    for candidate, accepted in ((folder, True), (folder / REJECTED_DIR, False)):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate, accepted
    if cell.export_precision == "int8" and calib is None:
        raise UsageError(f"{cell.name}: INT8 needs calibration images: --calib DIR")
    result = export(checkpoint, to=cell.backend, out=folder, model=model, config=config,
                    input_size=cell.size, precision=cell.export_precision, calib=calib, threads=cell.threads,
                    verify_images=images if ann else None, verify_ann=ann, progress=progress, u8_input=u8_input)
    return result.directory, result.accepted


def gate_agreement(folder: Path) -> tuple[float | None, list[float] | None]:
    """(agreement, its 90% interval) that the export's gate measured, from the folder's parity.json; (None,
    None) when the gate found no detection to agree with (or an older export has no parity.json)."""
    from .manifest import PARITY_NAME
    from .report import read_parity

    if not (Path(folder) / PARITY_NAME).is_file():
        return None, None
    artifact = read_parity(Path(folder) / PARITY_NAME)["artifacts"][0]
    return artifact.get("agreement"), artifact.get("agreement_interval")


def open_cell(cell: Cell, folder: Path | None, loaded, streams: int | None = None):
    """(runtime, processing) of a cell; ``streams`` puts an OpenVINO runtime in throughput mode."""
    from .detector import processing_config
    from .manifest import read_manifest
    from .runtimes import open_export, runtime_class

    if cell.backend == REFERENCE.backend:
        spec = loaded.spec.with_input_size(*cell.size)
        return runtime_class(REFERENCE.backend)(loaded.module, threads=cell.threads), processing_config(spec)
    manifest = read_manifest(folder, check_files=False)  # open_export checks the very bytes it loads
    # an execution mode is the runtime's inference precision (bf16); the artifact's own otherwise (f32)
    options = ({"infer_precision": cell.precision if cell.precision in BACKENDS[cell.backend].execution_modes
                else "fp32"} if "infer_precision" in BACKENDS[cell.backend].runtime_options else {})
    if streams and "streams" in BACKENDS[cell.backend].runtime_options:
        options["streams"] = streams
    return open_export(folder, manifest, threads=cell.threads, **options), manifest.processing_config()


def artifact_size(directory: Path, manifest) -> int:
    """Bytes of the model as shipped: the files the manifest lists, without the manifest itself and without
    files a runtime does not load (ncnn's INT8 calibration table)."""
    return sum((Path(directory) / name).stat().st_size for key, name in manifest.files.items() if key != "table")
