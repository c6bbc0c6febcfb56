"""Peak resident memory of serving one bench cell: a fresh Python process (``python -m
nanodet_deploy.memory_probe CELL``) loads the cell's runtime, runs it ``MEMORY_RUNS`` times and prints its peak.
A child process because a process's peak only grows."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from .bench_cells import REFERENCE, Cell, open_cell

MEMORY_RUNS = 5


def peak_rss_mb(cell: Cell, folder: Path | None, checkpoint, model=None, config=None) -> float | None:
    """Peak resident memory (MB) of a fresh process that loads ``cell``'s runtime and runs it: the whole
    footprint of serving that model with that backend from Python (interpreter and libraries included).
    None when the probe fails (its stderr is not the user's concern: the table shows '-')."""
    payload = json.dumps({**asdict(cell), "folder": str(folder) if folder else None, "checkpoint": str(checkpoint),
                          "model": model, "config": str(config) if config else None})
    try:
        result = subprocess.run([sys.executable, "-m", __name__, payload], capture_output=True, text=True,
                                timeout=300)
        return float(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def _peak_kb() -> float:
    """VmHWM: this process image's peak. ru_maxrss would not do: Linux hands a forked child its parent's peak."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(payload: str) -> None:
    """The child: load the cell's runtime, run it MEMORY_RUNS times on the input it takes, print the peak MB."""
    import numpy as np

    from .processing import preprocess

    cell = json.loads(payload)
    c = Cell(cell["backend"], cell["precision"], tuple(cell["size"]), cell["threads"])
    loaded = None
    if c.backend == REFERENCE.name:  # imported only here: torch alone is most of a process's memory
        from .model import load

        loaded = load(cell["checkpoint"], model=cell["model"], config=cell["config"])
    runtime, processing = open_cell(c, Path(cell["folder"]) if cell["folder"] else None, loaded)
    image = np.random.default_rng(0).integers(0, 256, (c.size[1], c.size[0], 3), dtype=np.uint8)
    tensor, _ = preprocess(image, processing, runtime.input_format)
    for _ in range(MEMORY_RUNS):
        runtime.run(tensor)
    print(json.dumps(_peak_kb() / 1024))


if __name__ == "__main__":
    main(sys.argv[1])
