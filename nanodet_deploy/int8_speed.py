"""Whether INT8 runs faster than FP32 on this machine, per backend, size and threads: ``bench`` records what it
measured (``record``, a small table in its export folder) and ``export`` reads bench's default folder back
(``slower_warning``) to warn in one line when someone asks for an INT8 this machine ran slower than FP32.

An entry counts only for the machine and backend version that measured it: the CPU's model name, cores and
instruction sets and the backend's package version are part of it. The table is our own cache file but is read
as untrusted input (a damaged one is ignored, never a traceback). Why a backend's INT8 is slower is the
backend's own finding, measured per layer (``INT8_COST`` in its converter module, from benchmarks/*_ops.py).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from .json_input import ListOf, Number, Record, Text, Whole

TABLE_NAME = "int8-speed.json"
_ENTRY = Record({"machine": Text(), "backend": Text(), "version": Text(), "size": Text(), "threads": Whole(1),
                 "int8_vs_fp32": Number(finite=True), "fp32_ms": Number(finite=True),
                 "int8_ms": Number(finite=True), "measured": Text()})
_TABLE = Record({"entries": ListOf(_ENTRY)})


def default_table() -> Path:
    """The table in bench's default export folder (``bench`` without --export-dir)."""
    from .files import cache_dir

    return cache_dir() / "bench" / TABLE_NAME


def machine_key(info: dict) -> str:
    """What makes two timings comparable: CPU model, cores and instruction sets (machine.machine())."""
    return f"{info.get('cpu')} · {info.get('cores')} cores · {' '.join(info.get('isa') or [])}"


def backend_version(info: dict, backend: str) -> str:
    from .targets import BACKENDS

    return str((info.get("versions") or {}).get(BACKENDS[backend].package, "?"))


def read_entries(path: Path) -> list[dict]:
    """The table's entries; none when it is missing or damaged (it is a cache: the next bench rewrites it)."""
    from .errors import UsageError
    from .json_input import checked, read_json

    if not path.is_file():
        return []
    try:
        return checked(read_json(path), _TABLE, path)["entries"]
    except UsageError:
        return []


def record(folder: Path, rows: list[dict], info: dict) -> Path | None:
    """Add this run's INT8-vs-FP32 inference ratios (bench rows with ``infer_vs_fp32``) to ``folder``'s table,
    replacing older entries of the same machine, backend, size and threads. Returns the table's path, or None
    when the run measured no INT8 next to its FP32."""
    from .files import write_text_atomic

    machine, today = machine_key(info), datetime.date.today().isoformat()
    new = [{"machine": machine, "backend": r["backend"], "version": backend_version(info, r["backend"]),
            "size": r["size"], "threads": r["threads"], "int8_vs_fp32": r["infer_vs_fp32"],
            "fp32_ms": r["infer_ms"] / r["infer_vs_fp32"], "int8_ms": r["infer_ms"], "measured": today}
           for r in rows if r["precision"] == "int8" and r["infer_vs_fp32"] is not None]
    if not new:
        return None
    path = Path(folder) / TABLE_NAME
    replaced = {(e["machine"], e["backend"], e["size"], e["threads"]) for e in new}
    kept = [e for e in read_entries(path) if (e["machine"], e["backend"], e["size"], e["threads"]) not in replaced]
    write_text_atomic(path, json.dumps({"entries": kept + new}, indent=1) + "\n")
    return path


def slower_warning(backend: str, size: tuple[int, int], threads: int | None, info: dict,
                   path: Path | None = None) -> str | None:
    """One line when bench measured ``backend``'s INT8 at ``size`` slower than its FP32 on this machine and
    backend version (the entry with ``threads``, else the one with the most threads); None otherwise."""
    from .targets import BACKENDS

    size_text, machine = f"{size[0]}x{size[1]}", machine_key(info)
    entries = [e for e in read_entries(path or default_table())
               if (e["machine"], e["backend"], e["size"], e["version"])
               == (machine, backend, size_text, backend_version(info, backend))]
    if not entries:
        return None
    entry = next((e for e in entries if e["threads"] == threads), max(entries, key=lambda e: e["threads"]))
    if entry["int8_vs_fp32"] < 1.0:
        return None
    cost = BACKENDS[backend].int8_cost()
    return (f"INT8 {backend} ran at {entry['int8_vs_fp32']:.2f}x its FP32 inference time on this machine "
            f"({entry['int8_ms']:.1f} vs {entry['fp32_ms']:.1f} ms, bench {entry['measured']}, {size_text}, "
            f"{entry['threads']} threads)" + (f": {cost}" if cost else ""))
