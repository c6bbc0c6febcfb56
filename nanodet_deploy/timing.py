"""How bench times: every configuration takes its turn on the same image before the next image (this machine
class is shared and noisy, so comparisons are ratios within one run), stage by stage, and frames per second of
the sequential against the pipelined video loop."""

from __future__ import annotations

import time

import numpy as np

THROUGHPUT_ROUNDS = 2


def summary(values_ms: list[float]) -> dict:
    """median / p90 / min of a list of milliseconds."""
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
            tensor, matrix = preprocess(image, processing, runtime.input_format)
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
