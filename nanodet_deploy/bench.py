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

from .targets import BACKENDS as _REGISTRY, REFERENCE, TARGETS

BACKENDS = tuple(_REGISTRY)                   # runtime backends, the PyTorch reference first
EXPORT_TARGET = {t.backend: t.name for t in TARGETS.values()}
PRECISIONS = ("fp32", "fp16", "int8", *sorted({m for t in TARGETS.values() for m in t.execution_modes}))
BASELINE = (TARGETS["onnx"].backend, "fp32")
MEMORY_RUNS = 5
# latency: one image at a time, each split into preprocess / inference / decode+NMS. throughput: also video-like
# frames per second, sequential against streaming.pipelined (OpenVINO in throughput mode, one stream per thread)
MODES = ("latency", "throughput")
THROUGHPUT_ROUNDS = 2


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
        return "fp32" if self.precision in _REGISTRY[self.backend].execution_modes else self.precision


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
    for name in backends:
        if name not in BACKENDS:
            raise UsageError(f"unknown backend '{name}' (available: {', '.join(BACKENDS)}, all)")
    for p in precisions:
        if p not in PRECISIONS:
            raise UsageError(f"unknown precision '{p}' (available: {', '.join(PRECISIONS)})")
    def runs(backend, precision):
        row = _REGISTRY[backend]
        return precision in row.execution_modes or precision in row.precisions

    return [Cell(b, p, s, t) for s in sizes for t in threads for b in backends for p in precisions if runs(b, p)]


def takes_u8_input(cell: Cell) -> bool:
    """Whether ``cell``'s export can take the 8-bit image (``export --u8-input``)."""
    return cell.backend != REFERENCE.backend and "u8_input" in TARGETS[EXPORT_TARGET[cell.backend]].options


def export_key(checkpoint_sha256: str, cell: Cell, calib: Path | None, verify_ann: Path | None = None,
               u8_input: bool = False) -> str:
    """Folder name of a cached export: the checkpoint, every option that changes the artifact, and the
    annotations its parity verdict was measured on."""
    options = {"target": EXPORT_TARGET[cell.backend], "size": cell.size, "precision": cell.export_precision,
               "calib": str(Path(calib).resolve()) if calib and cell.export_precision == "int8" else None,
               "verified_on": str(Path(verify_ann).resolve()) if verify_ann else None}
    if u8_input:
        options["u8_input"] = True
    digest = hashlib.sha256(json.dumps([checkpoint_sha256, options], sort_keys=True).encode()).hexdigest()[:12]
    return f"{EXPORT_TARGET[cell.backend]}-{cell.size[0]}x{cell.size[1]}-{cell.export_precision}-{digest}"


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
    result = export(checkpoint, to=EXPORT_TARGET[cell.backend], out=folder, model=model, config=config,
                    input_size=cell.size, precision=cell.export_precision, calib=calib, threads=cell.threads,
                    verify_images=images if ann else None, verify_ann=ann, progress=progress, u8_input=u8_input)
    return result.directory, result.accepted


def open_cell(cell: Cell, folder: Path | None, loaded, streams: int | None = None):
    """(runtime, processing) of a cell; ``streams`` puts an OpenVINO runtime in throughput mode."""
    from .detector import processing_config
    from .manifest import read_manifest
    from .runtimes import open_export, runtime_class

    if cell.backend == REFERENCE.backend:
        spec = loaded.spec.with_input_size(*cell.size)
        return runtime_class(REFERENCE.backend)(loaded.module, threads=cell.threads), processing_config(spec)
    manifest = read_manifest(folder)
    # an execution mode is the runtime's inference precision (bf16); the artifact's own otherwise (f32)
    options = ({"infer_precision": cell.precision if cell.precision in _REGISTRY[cell.backend].execution_modes
                else "f32"} if "infer_precision" in _REGISTRY[cell.backend].runtime_options else {})
    if streams and "streams" in _REGISTRY[cell.backend].runtime_options:
        options["streams"] = streams
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
    from .processing import input_format_of, postprocess, preprocess

    names = list(runners)
    times = {name: {"preprocess": [], "inference": [], "postprocess": [], "total": []} for name in names}
    for i in range(warmup + runs):
        image = images[i % len(images)]
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            runtime, processing = runners[name]
            t0 = time.perf_counter()
            tensor, matrix = preprocess(image, processing, input_format_of(runtime))
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


def frames_per_second(detectors: dict, frames: list[np.ndarray], count: int, rounds: int = THROUGHPUT_ROUNDS,
                      progress=None) -> dict:
    """{name: (sequential FPS, pipelined FPS)} of ``count`` frames (``frames`` cycled) through each
    ``detectors[name] = (sequential detector, pipelined detector)``, both taking turns per round, best round
    kept."""
    from .streaming import pipelined, sequential

    video = [frames[i % len(frames)] for i in range(count)]
    best = {name: [0.0, 0.0] for name in detectors}
    for _ in range(rounds):
        for name, pair in detectors.items():
            for k, (run, detector) in enumerate(zip((sequential, pipelined), pair)):
                started = time.perf_counter()
                done = sum(1 for _ in run(detector, iter(video)))
                best[name][k] = max(best[name][k], done / (time.perf_counter() - started))
            if progress:
                progress()
    return {name: tuple(value) for name, value in best.items()}


_MEMORY_PROBE = """
import json, resource, sys
import numpy as np
from pathlib import Path
cell = json.loads(sys.argv[1])
from nanodet_deploy.bench import REFERENCE, Cell, open_cell
c = Cell(cell["backend"], cell["precision"], tuple(cell["size"]), cell["threads"])
loaded = None
if c.backend == REFERENCE.backend:  # imported only here: torch alone is most of a process's memory
    from nanodet_deploy.model import load
    loaded = load(cell["checkpoint"], model=cell["model"], config=cell["config"])
runtime, processing = open_cell(c, Path(cell["folder"]) if cell["folder"] else None, loaded)
from nanodet_deploy.processing import input_format_of, preprocess
image = np.random.default_rng(0).integers(0, 256, (c.size[1], c.size[0], 3), dtype=np.uint8)
tensor, _ = preprocess(image, processing, input_format_of(runtime))  # the input the runtime takes
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
        ann=None, memory: bool = True, progress=None, log=print, mode: str = "latency",
        u8_input: bool = False) -> list[CellResult]:
    """Benchmark every cell of the plan; see the module docstring. ``sizes`` default to the model's own.
    ``u8_input`` exports the cells whose target can take the 8-bit image that way (OpenVINO)."""
    from .evaluate import CocoSet, evaluate
    from .detector import Detector
    from .images import collect_images, read_image
    from .manifest import read_manifest
    from .model import load
    from .model.zoo import cache_dir
    from .parity import synthetic_images

    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got '{mode}'")
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
        if cell.backend != REFERENCE.backend:
            folder, result.accepted = cached_export(export_root, loaded, checkpoint, cell, calib, model, config,
                                                    images, ann, progress, u8_input)
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

    if mode == "throughput":
        advance = progress("frames per second", THROUGHPUT_ROUNDS * len(results)) if progress else None
        detectors = {}
        for result in results:
            runtime, processing = runners[result.cell]
            streamed = (open_cell(result.cell, Path(result.export_dir), loaded, streams=result.cell.threads)[0]
                        if "streams" in _REGISTRY[result.cell.backend].runtime_options else runtime)
            detectors[result.cell] = tuple(Detector.from_runtime(r, processing, loaded.spec.class_names)
                                           for r in (runtime, streamed))
        for cell, (sequential_fps, pipelined_fps) in frames_per_second(detectors, frames, runs,
                                                                        progress=advance).items():
            result = next(r for r in results if r.cell == cell)
            result.fps_sequential, result.fps_pipelined = sequential_fps, pipelined_fps

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


# the instruction sets a CPU timing depends on, as /proc/cpuinfo names them -> how we print them. INT8 kernels
# gain from an int8 dot product (VNNI); without it INT8 is often no faster than FP32.
INSTRUCTION_SETS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI",
                    "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX512-BF16", "avx512_fp16": "AVX512-FP16",
                    "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8", "asimddp": "NEON-dotprod", "i8mm": "I8MM"}
BACKEND_PACKAGES = ("onnxruntime", "openvino", "MNN", "ncnn", "torch", "opencv-python-headless")


def machine() -> dict:
    """The CPU's model name and instruction sets (from /proc/cpuinfo where there is one), cores, the OS and the
    versions of the backends' packages (read from their metadata: nothing is imported)."""
    import os
    import platform
    from importlib import metadata

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("", platform.processor() or platform.machine()):
                cpu = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    versions = {}
    for package in BACKEND_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    from . import native

    return {"cpu": cpu, "cores": os.cpu_count(), "isa": [name for flag, name in INSTRUCTION_SETS.items()
                                                          if flag in flags],
            "system": platform.platform(), "python": platform.python_version(), "versions": versions,
            "preprocessing": native.warp_kernels()}


def machine_line(info: dict) -> str:
    """One line naming the machine a timing was taken on: CPU, cores, instruction sets, backend versions, and
    which warp kernels ran the preprocessing."""
    isa = info.get("isa") or []
    missing = [name for name in ("AVX512-VNNI", "AVX512-BF16", "AMX-INT8") if name not in isa]
    sets = " ".join(isa) or "no AVX2"
    if missing and "AVX2" in isa:
        sets += f" (no {', '.join(missing)})"
    versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items())
    preprocessing = f" · preprocessing {info['preprocessing']}" if info.get("preprocessing") else ""
    return f"{info['cpu']} · {info['cores']} cores · {sets}" + (f" · {versions}" if versions else "") + preprocessing


def int8_hardware_note(info: dict) -> str:
    """Why INT8 may not beat FP32 here, from the instruction sets."""
    isa = set(info.get("isa") or [])
    if not isa & {"AVX512-VNNI", "AVX-VNNI", "AMX-INT8", "NEON-dotprod", "I8MM"}:
        return "this CPU has no int8 dot product (VNNI): INT8 kernels emulate it and gain little or nothing"
    return "the CPU has VNNI; the backend's INT8 path (requantization, layout changes, float layers) costs it"
