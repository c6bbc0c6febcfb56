"""``nanodet-deploy bench``: latency (split into preprocess / inference / decode+NMS), size, peak memory,
achieved GFLOP/s and mAP per backend x precision x input size x threads.

This machine class is shared and noisy, so every configuration is timed interleaved with the others: each takes
its turn on the same image before the next image, and comparisons are ratios from one run. Exports are made
once and cached by checkpoint hash + export options, so a second run converts nothing.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import UsageError

BACKENDS = ("torch", "onnxruntime", "openvino", "mnn", "ncnn")
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
EXPORT_TARGET = {"onnxruntime": "onnx", "openvino": "openvino", "mnn": "mnn", "ncnn": "ncnn"}
BASELINE = ("onnxruntime", "fp32")
MEMORY_RUNS = 5


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
        return "fp32" if self.precision == "bf16" else self.precision


@dataclass
class CellResult:
    cell: Cell
    ran: str = ""                      # what the runtime says it executes
    accepted: bool | None = None       # the export's parity verdict (None for torch)
    export_dir: str | None = None
    size_mb: float | None = None
    preprocess_ms: dict = field(default_factory=dict)   # median / p90 / min
    inference_ms: dict = field(default_factory=dict)
    postprocess_ms: dict = field(default_factory=dict)
    total_ms: dict = field(default_factory=dict)
    gflops_per_s: float | None = None
    peak_rss_mb: float | None = None
    map: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("cell"))
        d["size"] = list(self.cell.size)
        return d


def plan(backends, precisions, sizes, threads) -> list[Cell]:
    """Every meaningful cell: torch runs FP32 only; bf16 is an OpenVINO execution mode."""
    for name in backends:
        if name not in BACKENDS:
            raise UsageError(f"unknown backend '{name}' (available: {', '.join(BACKENDS)}, all)")
    for p in precisions:
        if p not in PRECISIONS:
            raise UsageError(f"unknown precision '{p}' (available: {', '.join(PRECISIONS)})")
    return [Cell(b, p, s, t) for s in sizes for t in threads for b in backends for p in precisions
            if (b != "torch" or p == "fp32") and (p != "bf16" or b == "openvino")]


def export_key(checkpoint_sha256: str, cell: Cell, calib: Path | None, verify_ann: Path | None = None) -> str:
    """Folder name of a cached export: the checkpoint, every option that changes the artifact, and the
    annotations its parity verdict was measured on."""
    options = {"target": EXPORT_TARGET[cell.backend], "size": cell.size, "precision": cell.export_precision,
               "calib": str(Path(calib).resolve()) if calib and cell.export_precision == "int8" else None,
               "verified_on": str(Path(verify_ann).resolve()) if verify_ann else None}
    digest = hashlib.sha256(json.dumps([checkpoint_sha256, options], sort_keys=True).encode()).hexdigest()[:12]
    return f"{EXPORT_TARGET[cell.backend]}-{cell.size[0]}x{cell.size[1]}-{cell.export_precision}-{digest}"


def cached_export(export_root: Path, loaded, checkpoint, cell: Cell, calib, model=None, config=None,
                  images=None, ann=None, progress=None) -> tuple[Path, bool]:
    """(export folder, accepted) for ``cell``, exporting only when no cached export exists. With ``images`` +
    ``ann`` the parity gate measures mAP (INT8's budget is a mAP drop: without annotations it is unchecked). A
    rejected export (over its budget) is benchmarked all the same and reported as rejected."""
    from .export import REJECTED_DIR, export
    from .manifest import MANIFEST_NAME

    folder = export_root / export_key(loaded.sha256, cell, calib, ann)
    for candidate, accepted in ((folder, True), (folder / REJECTED_DIR, False)):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate, accepted
    if cell.export_precision == "int8" and calib is None:
        raise UsageError(f"{cell.name}: INT8 needs calibration images: --calib DIR")
    result = export(checkpoint, to=EXPORT_TARGET[cell.backend], out=folder, model=model, config=config,
                    input_size=cell.size, precision=cell.export_precision, calib=calib, threads=cell.threads,
                    verify_images=images if ann else None, verify_ann=ann, progress=progress)
    return result.directory, result.accepted


def open_cell(cell: Cell, folder: Path | None, loaded):
    """(runtime, processing) of a cell."""
    from .detector import processing_config
    from .manifest import read_manifest
    from .runtimes import open_export, runtime_class

    if cell.backend == "torch":
        spec = loaded.spec.with_input_size(*cell.size)
        return runtime_class("torch")(loaded.module, threads=cell.threads), processing_config(spec)
    manifest = read_manifest(folder)
    options = {"infer_precision": "bf16" if cell.precision == "bf16" else "f32"} if cell.backend == "openvino" else {}
    return open_export(folder, manifest, threads=cell.threads, **options), manifest.processing_config()


def count_macs(module, input_size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass, counted once from the graph: every convolution's output
    elements x (input channels / groups) x kernel area."""
    import torch

    total = 0

    def hook(conv, inputs, output):
        nonlocal total
        total += output.numel() * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, input_size[1], input_size[0]))
    finally:
        for handle in handles:
            handle.remove()
    return total


def _stats(values_ms: list[float]) -> dict:
    return {"median": float(np.median(values_ms)), "p90": float(np.percentile(values_ms, 90)),
            "min": float(np.min(values_ms))}


def interleaved_stages(runners: dict, images: list[np.ndarray], runs: int, warmup: int, progress=None) -> dict:
    """{name: {stage: [ms, ...]}} timing preprocess, inference and decode+NMS of every runner, taking turns per
    image (the order rotates so no runner always follows the same one). ``runners``: name -> (runtime,
    processing)."""
    from .processing import postprocess, preprocess

    names = list(runners)
    times = {name: {"preprocess": [], "inference": [], "postprocess": [], "total": []} for name in names}
    for i in range(warmup + runs):
        image = images[i % len(images)]
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            runtime, processing = runners[name]
            t0 = time.perf_counter()
            tensor, matrix = preprocess(image, processing)
            t1 = time.perf_counter()
            raw = runtime.run(tensor)
            t2 = time.perf_counter()
            postprocess(raw[0], matrix, (image.shape[1], image.shape[0]), processing)
            t3 = time.perf_counter()
            if i >= warmup:
                for stage, ms in zip(("preprocess", "inference", "postprocess", "total"),
                                     (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    times[name][stage].append(ms * 1e3)
        if progress:
            progress()
    return times


_MEMORY_PROBE = """
import json, resource, sys
import numpy as np
from pathlib import Path
cell = json.loads(sys.argv[1])
from nanodet_deploy.bench import Cell, open_cell
c = Cell(cell["backend"], cell["precision"], tuple(cell["size"]), cell["threads"])
loaded = None
if c.backend == "torch":  # imported only here: torch alone is most of a process's memory
    from nanodet_deploy.model import load
    loaded = load(cell["checkpoint"], model=cell["model"], config=cell["config"])
runtime, processing = open_cell(c, Path(cell["folder"]) if cell["folder"] else None, loaded)
tensor = np.random.default_rng(0).standard_normal((1, 3, c.size[1], c.size[0])).astype(np.float32)
for _ in range({runs}):
    runtime.run(tensor)
# VmHWM: this process image's peak. ru_maxrss would not do: Linux hands a forked child its parent's peak
try:
    peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(peak_kb / 1024))
"""


def peak_rss_mb(cell: Cell, folder: Path | None, checkpoint, model=None, config=None) -> float | None:
    """Peak resident memory (MB) of a fresh process that loads ``cell``'s runtime and runs it: the whole
    footprint of serving that model with that backend from Python (interpreter and libraries included).
    Measured in a child process because a process's peak only grows."""
    payload = json.dumps({**asdict(cell), "folder": str(folder) if folder else None, "checkpoint": str(checkpoint),
                          "model": model, "config": str(config) if config else None})
    try:
        result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE.replace("{runs}", str(MEMORY_RUNS)), payload],
                                capture_output=True, text=True, timeout=300)
        return float(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def artifact_size(directory: Path, manifest) -> int:
    """Bytes of the model as shipped: the files the manifest lists, without the manifest itself and without
    files a runtime does not load (ncnn's INT8 calibration table)."""
    return sum((Path(directory) / name).stat().st_size for key, name in manifest.files.items() if key != "table")


def run(checkpoint, model=None, config=None, backends=BACKENDS, precisions=PRECISIONS, sizes=None, threads=(2,),
        runs: int = 100, warmup: int = 10, export_root: str | Path | None = None, calib=None, images=None,
        ann=None, memory: bool = True, progress=None, log=print) -> list[CellResult]:
    """Benchmark every cell of the plan; see the module docstring. ``sizes`` default to the model's own."""
    from .evaluate import CocoSet, evaluate
    from .detector import Detector
    from .images import collect_images, read_image
    from .manifest import read_manifest
    from .model import load
    from .model.zoo import cache_dir
    from .parity import synthetic_images

    loaded = load(checkpoint, model=model, config=config)
    sizes = sizes or [tuple(loaded.spec.input_size)]
    cells = plan(backends, precisions, sizes, threads)
    if calib is None and any(c.precision == "int8" for c in cells):
        log("note: no --calib: INT8 cells skipped")
        cells = [c for c in cells if c.precision != "int8"]
    export_root = Path(export_root) if export_root else cache_dir() / "bench"
    coco_set = CocoSet.load(images, ann) if ann else None
    if coco_set is not None:
        frames = [read_image(path) for _, path in coco_set.images]
    elif images is not None:
        frames = [read_image(path) for path in collect_images([images])]
    else:
        frames = synthetic_images()
        log("note: no --images: timing on synthetic images (decode+NMS cost depends on real content)")

    results, runners = [], {}
    for cell in cells:
        result = CellResult(cell)
        folder = None
        if cell.backend != "torch":
            folder, result.accepted = cached_export(export_root, loaded, checkpoint, cell, calib, model, config,
                                                    images, ann, progress)
            result.export_dir = str(folder)
            result.size_mb = artifact_size(folder, read_manifest(folder)) / 1e6
            if not result.accepted:
                result.note = "export over the parity budget (rejected); timed all the same"
        runners[cell] = open_cell(cell, folder, loaded)  # the module is fully convolutional: any input size
        result.ran = runners[cell][0].precision
        results.append(result)

    advance = progress("timing (interleaved)", warmup + runs) if progress else None
    times = interleaved_stages({r.cell: runners[r.cell] for r in results}, frames, runs, warmup, advance)
    macs = {size: count_macs(loaded.module, size) for size in sizes}  # convolutions: any input size works
    for result in results:
        stages = times[result.cell]
        result.preprocess_ms, result.inference_ms = _stats(stages["preprocess"]), _stats(stages["inference"])
        result.postprocess_ms, result.total_ms = _stats(stages["postprocess"]), _stats(stages["total"])
        result.gflops_per_s = 2 * macs[result.cell.size] / (result.inference_ms["median"] * 1e-3) / 1e9

    if coco_set is not None:
        advance = progress("mAP", len(results) * len(frames)) if progress else None
        for result in results:
            runtime, processing = runners[result.cell]
            detector = Detector.from_runtime(runtime, processing, loaded.spec.class_names)
            result.map = evaluate(detector, coco_set, processing.num_classes, advance)["map"]
    if memory:
        advance = progress("peak memory (one process per cell)", len(results)) if progress else None
        for result in results:
            result.peak_rss_mb = peak_rss_mb(result.cell, result.export_dir, loaded.checkpoint, model, config)
            if advance:
                advance()
    return results


def rows(results: list[CellResult]) -> list[dict]:
    """Table rows with the ratio of each cell's end-to-end median to ONNX Runtime FP32 of the same size and
    threads in the same run (when it was measured)."""
    base = {(r.cell.size, r.cell.threads): r.total_ms["median"] for r in results
            if (r.cell.backend, r.cell.precision) == BASELINE}
    out = []
    for r in results:
        b = base.get((r.cell.size, r.cell.threads))
        infer = r.inference_ms["median"]
        overhead = (r.preprocess_ms["median"] + r.postprocess_ms["median"]) / infer
        out.append({"backend": r.cell.backend, "precision": r.cell.precision, "ran": r.ran,
                    "size": f"{r.cell.size[0]}x{r.cell.size[1]}", "threads": r.cell.threads,
                    "pre_ms": r.preprocess_ms["median"], "infer_ms": infer, "post_ms": r.postprocess_ms["median"],
                    "total_ms": r.total_ms["median"], "total_p90_ms": r.total_ms["p90"],
                    "total_min_ms": r.total_ms["min"], "ratio": r.total_ms["median"] / b if b else None,
                    "overhead": overhead, "gflops_per_s": r.gflops_per_s, "size_mb": r.size_mb,
                    "peak_rss_mb": r.peak_rss_mb, "map": r.map,
                    "note": r.note})
    return out


COLUMNS = [("backend", "backend", "s"), ("precision", "prec", "s"), ("ran", "ran", "s"), ("size", "size", "s"),
           ("threads", "thr", "d"), ("pre_ms", "pre ms", ".2f"), ("infer_ms", "infer ms", ".2f"),
           ("post_ms", "post ms", ".2f"), ("total_ms", "total ms", ".2f"), ("total_p90_ms", "p90", ".2f"),
           ("ratio", "vs ORT fp32", ".2f"), ("overhead", "pre+post/infer", ".0%"),
           ("gflops_per_s", "GFLOP/s", ".1f"), ("size_mb", "MB", ".2f"), ("peak_rss_mb", "peak RSS MB", ".0f"),
           ("map", "mAP", ".4f")]


def machine() -> dict:
    """The CPU's model name (from /proc/cpuinfo where there is one), cores, and the OS."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(), "python": platform.python_version()}


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A fixed-width text table: columns are (key, header, format); None prints as '-'."""
    widths = [max(len(header), *(len(_fmt(row[key], fmt)) for row in rows)) for key, header, fmt in columns]
    lines = ["  ".join(header.rjust(w) for (_, header, _), w in zip(columns, widths))]
    lines += ["  ".join(_fmt(row[key], fmt).rjust(w) for (key, _, fmt), w in zip(columns, widths)) for row in rows]
    return "\n".join(lines)


def markdown_table(rows: list[dict], columns=COLUMNS) -> str:
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row[key], fmt) for key, _, fmt in columns) + " |" for row in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str = "") -> None:
    """Latency (end to end, median) against mAP: colour per backend, marker per precision. The mAP axis spans
    the artifacts that meet their budget; one far below (rejected) is drawn at the bottom edge and labelled
    with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_path

    colours = {"torch": "tab:gray", "onnxruntime": "tab:blue", "openvino": "tab:purple", "mnn": "tab:orange",
               "ncnn": "tab:green"}
    markers = {"fp32": "o", "fp16": "s", "int8": "^", "bf16": "D"}
    measured = [r["map"] for r in rows if r["map"] is not None and not r["note"]]
    low, high = (min(measured) - 0.01, max(measured) + 0.006) if measured else (0.0, 1.0)
    fig, ax = plt.subplots(figsize=(9, 6))
    for row in rows:
        value = row["map"] if row["map"] is not None else float("nan")
        y = min(max(value, low + 0.001), high)
        label = f"{row['precision']}" + (f" {row['size']} t{row['threads']}" if len({(r['size'], r['threads'])
                                                                                   for r in rows}) > 1 else "")
        if y != value and value == value:
            label += f" (mAP {value:.3f}, off scale)"
        ax.scatter(row["total_ms"], y, color=colours.get(row["backend"], "black"),
                   marker=markers.get(row["precision"], "o"), s=70,
                   facecolors="none" if row["note"] else None)
        ax.annotate(label, (row["total_ms"], y), textcoords="offset points", xytext=(6, 3), fontsize=7)
    for backend, colour in colours.items():
        if any(r["backend"] == backend for r in rows):
            ax.scatter([], [], color=colour, label=backend)
    ax.legend(loc="center right", fontsize=8, title="hollow = over its parity budget", title_fontsize=7)
    ax.set_ylim(low, high)
    ax.set_xlabel("end-to-end latency, median ms (preprocess + inference + decode/NMS)")
    ax.set_ylabel("mAP" if measured else "mAP (not measured: no --ann)")
    ax.set_title(title or "nanodet-deploy bench")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
