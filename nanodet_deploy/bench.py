"""Latency measurement. This machine class is shared and noisy, so runtimes are timed interleaved: each
takes its turn on the same input before the next input, and comparisons are ratios from one run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def interleaved_latency(runtimes: dict, tensors: list[np.ndarray], runs: int = 100, warmup: int = 10,
                        progress=None) -> dict[str, dict]:
    """{name: {median_ms, p90_ms, min_ms}} of ``runtime.run`` for every runtime, taking turns per input."""
    times = {name: [] for name in runtimes}
    for i in range(warmup + runs):
        tensor = tensors[i % len(tensors)]
        for name, runtime in runtimes.items():
            start = time.perf_counter()
            runtime.run(tensor)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
        if progress:
            progress()
    return {name: {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)),
                   "min_ms": float(np.min(v))} for name, v in times.items()}


def artifact_size(directory: Path, manifest) -> int:
    """Bytes of the model as shipped: the files the manifest lists, without the manifest itself and without
    files a runtime does not load (ncnn's INT8 calibration table)."""
    return sum((Path(directory) / name).stat().st_size for key, name in manifest.files.items() if key != "table")


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A fixed-width text table: columns are (key, header, format)."""
    widths = [max(len(header), *(len(format(row[key], fmt)) for row in rows)) for key, header, fmt in columns]
    lines = ["  ".join(header.rjust(w) for (_, header, _), w in zip(columns, widths))]
    lines += ["  ".join(format(row[key], fmt).rjust(w) for (key, _, fmt), w in zip(columns, widths)) for row in rows]
    return "\n".join(lines)
