"""``nanodet-deploy bench``: latency (split into preprocess / inference / decode+NMS), size, peak memory,
achieved GFLOP/s and mAP per backend x precision x input size x threads — the cells of ``bench_cells``, timed by
``timing`` (interleaved: ratios within one run), their memory by ``memory_probe``, formatted by
``bench_results``.
"""

from __future__ import annotations

from pathlib import Path

from .bench_cells import (REFERENCE, CellResult, all_precisions, artifact_size, cached_export, gate_agreement,
                          open_cell, plan)
from .errors import UsageError
from .memory_probe import peak_rss_mb
from .model.macs import count_macs
from .targets import BACKENDS
from .timing import THROUGHPUT_ROUNDS, frames_per_second, interleaved_stages, summary

# latency: one image at a time, each split into preprocess / inference / decode+NMS. throughput: also video-like
# frames per second, sequential against streaming.pipelined (OpenVINO in throughput mode, one stream per thread)
MODES = ("latency", "throughput")


def execution_verdict(cell, folder: Path, loaded, images, ann, progress=None):
    """(accepted, note, parity report) of an FP32 artifact run in an execution mode (OpenVINO bf16): the gate on
    the same inputs as the export's (val-dev with annotations where bench has them), held to the budgets of that
    execution — the row's own verdict, not the FP32 export's (measured at 416: bf16 agreement 0.960 < 0.98)."""
    from .export import gate
    from .manifest import read_manifest
    from .runtimes.torch import TorchRuntime

    report = gate(folder, TorchRuntime(loaded.module, threads=cell.threads), read_manifest(folder),
                  images if ann else None, ann, threads=cell.threads, progress=progress,
                  infer_precision=cell.precision)
    failed = [c["metric"] for c in report.checks if c["passed"] is False]
    return report.passed, (f"{cell.precision} execution over its budget ({', '.join(failed)}); timed all the same"
                           if failed else ""), report


def run(checkpoint, model=None, config=None, backends=None, precisions=None, sizes=None, threads=(2,),
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
    if backends is None:  # all: every backend whose packages are installed, the others named
        missing = [row for row in BACKENDS.values() if not row.installed()]
        if missing:
            log("note: not installed, skipped: " + ", ".join(f"{row.name} (pip install 'nanodet-deploy[{row.extra}]')"
                                                             for row in missing))
        backends = [name for name, row in BACKENDS.items() if row.installed()]
    precisions = precisions or all_precisions()
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
            result.agreement, result.agreement_interval = gate_agreement(folder)
            if not result.accepted:
                result.note = "export over the parity budget (rejected); timed all the same"
        runners[cell] = open_cell(cell, folder, loaded)  # the module is fully convolutional: any input size
        result.ran = runners[cell][0].precision
        if result.accepted and cell.precision in BACKENDS[cell.backend].execution_modes:
            result.accepted, result.note, report = execution_verdict(cell, folder, loaded, images, ann, progress)
            result.agreement, result.agreement_interval = report.agreement, report.agreement_interval
        results.append(result)

    advance = progress("timing (interleaved)", warmup + runs) if progress else None
    times = interleaved_stages({r.cell: runners[r.cell] for r in results}, frames, runs, warmup, advance)
    macs = {size: count_macs(loaded.module, size) for size in sizes}  # convolutions: any input size works
    for result in results:
        stages = times[result.cell]
        result.preprocess_ms, result.inference_ms = summary(stages["preprocess"]), summary(stages["inference"])
        result.postprocess_ms, result.total_ms = summary(stages["postprocess"]), summary(stages["total"])
        result.gflops_per_s = 2 * macs[result.cell.size] / (result.inference_ms["median"] * 1e-3) / 1e9

    if mode == "throughput":
        advance = progress("frames per second", THROUGHPUT_ROUNDS * len(results)) if progress else None
        detectors = {}
        for result in results:
            runtime, processing = runners[result.cell]
            streamed = (open_cell(result.cell, Path(result.export_dir), loaded, streams=result.cell.threads)[0]
                        if "streams" in BACKENDS[result.cell.backend].runtime_options else runtime)
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
    from . import int8_speed
    from .bench_results import rows
    from .machine import machine

    int8_speed.record(export_root, rows(results), machine())  # what export warns from
    return results
