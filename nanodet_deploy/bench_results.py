"""``bench`` results as data and text: the rows (ratios to the baseline), the bench JSON — its one writer
(``document``) and its schema (``BENCH_JSON``, which ``report`` validates against) —, the table (terminal and
markdown), the INT8 summary lines and the latency-vs-mAP plot. The measuring is ``bench.py``; this module only
formats what it measured and imports nothing that measures."""

from __future__ import annotations

from pathlib import Path

from .json_input import Flag, ListOf, MapOf, Number, Optional, Record, Text, Whole
from .machine import int8_hardware_note, machine_line
from .targets import BACKENDS, BENCH_BASELINE as BASELINE


def rows(results) -> list[dict]:
    """Table rows of ``bench.CellResult`` objects, with the ratio of each cell's end-to-end median to ONNX
    Runtime FP32 of the same size and threads in the same run (when it was measured)."""
    base = {(r.cell.size, r.cell.threads): r.total_ms["median"] for r in results
            if (r.cell.backend, r.cell.precision) == BASELINE}
    own_fp32 = {(r.cell.backend, r.cell.size, r.cell.threads): r.inference_ms["median"] for r in results
                if r.cell.precision == "fp32"}
    out = []
    for r in results:
        b = base.get((r.cell.size, r.cell.threads))
        fp32 = own_fp32.get((r.cell.backend, r.cell.size, r.cell.threads)) if r.cell.precision != "fp32" else None
        infer = r.inference_ms["median"]
        overhead = (r.preprocess_ms["median"] + r.postprocess_ms["median"]) / infer
        out.append({"backend": r.cell.backend, "precision": r.cell.precision, "ran": r.ran,
                    "size": f"{r.cell.size[0]}x{r.cell.size[1]}", "threads": r.cell.threads,
                    "pre_ms": r.preprocess_ms["median"], "infer_ms": infer, "post_ms": r.postprocess_ms["median"],
                    "total_ms": r.total_ms["median"], "total_p90_ms": r.total_ms["p90"],
                    "total_min_ms": r.total_ms["min"], "ratio": r.total_ms["median"] / b if b else None,
                    "infer_vs_fp32": r.inference_ms["median"] / fp32 if fp32 else None,
                    "overhead": overhead, "gflops_per_s": r.gflops_per_s, "size_mb": r.size_mb,
                    "peak_rss_mb": r.peak_rss_mb, "map": r.map, "fps_sequential": r.fps_sequential,
                    "fps_pipelined": r.fps_pipelined,
                    "pipelined_x": r.fps_pipelined / r.fps_sequential if r.fps_pipelined and r.fps_sequential else None,
                    "agreement": r.agreement, "agreement_interval": r.agreement_interval,
                    "accepted": r.accepted, "note": r.note})
    return out


# The bench JSON: ``document`` writes it, ``read`` checks one (a file is untrusted input), ``report`` renders it.
# tests/test_report.py keeps BENCH_ROW_FIELDS equal to what ``rows`` makes.
_TEXT, _MS, _OPTIONAL_FIGURE = Text(), Number(finite=True), Optional(Number(finite=True))
BENCH_ROW_FIELDS = {
    "backend": _TEXT, "precision": _TEXT, "ran": _TEXT, "size": _TEXT, "threads": Whole(1), "pre_ms": _MS,
    "infer_ms": _MS, "post_ms": _MS, "total_ms": _MS, "total_p90_ms": _MS, "total_min_ms": _MS,
    "ratio": _OPTIONAL_FIGURE, "infer_vs_fp32": _OPTIONAL_FIGURE, "overhead": _MS, "gflops_per_s": _OPTIONAL_FIGURE,
    "size_mb": _OPTIONAL_FIGURE, "peak_rss_mb": _OPTIONAL_FIGURE, "map": _OPTIONAL_FIGURE,
    "fps_sequential": _OPTIONAL_FIGURE, "fps_pipelined": _OPTIONAL_FIGURE, "pipelined_x": _OPTIONAL_FIGURE,
    "agreement": _OPTIONAL_FIGURE, "agreement_interval": Optional(ListOf(Number(finite=True), 2, 2)),
    "accepted": Optional(Flag()), "note": _TEXT}
_MACHINE = Record({"cpu": _TEXT, "cores": Optional(Whole()), "isa": ListOf(_TEXT), "system": _TEXT, "python": _TEXT,
                   "versions": MapOf(_TEXT), "preprocessing": Optional(_TEXT)},
                  optional=("cores", "isa", "system", "python", "versions", "preprocessing"))
BENCH_JSON = Record({"machine": _MACHINE, "machine_line": _TEXT, "runs": Optional(Whole()), "mode": _TEXT,
                     # older bench files lack the newer columns: they show as "-"
                     "rows": ListOf(Record(BENCH_ROW_FIELDS, optional=("total_min_ms", "infer_vs_fp32",
                                                                         "fps_sequential", "fps_pipelined",
                                                                         "pipelined_x", "agreement",
                                                                         "agreement_interval", "accepted")), 1)},
                    optional=("machine", "machine_line", "runs", "mode"))


def document(results, machine: dict, runs: int, warmup: int, mode: str, u8_input: bool, checkpoint) -> dict:
    """The bench JSON of one run: the machine, the settings, every cell's measurements and the table rows."""
    return {"machine": machine, "machine_line": machine_line(machine), "runs": runs, "warmup": warmup,
            "mode": mode, "u8_input": u8_input, "checkpoint": str(checkpoint),
            "results": [r.to_dict() for r in results], "rows": rows(results)}


def summary_lines(document: dict) -> list[str]:
    """What ``bench`` prints: the machine, how it timed, the table, each row's note and the INT8 lines."""
    rows = document["rows"]
    return [f"nanodet-deploy bench · {document['machine_line']}",
            f"median of {document['runs']} runs, interleaved; ratio to {' '.join(BASELINE)} of the same size and "
            "threads", format_table(rows, columns_of(rows)),
            *(f"{row['backend']} {row['precision']} {row['size']}: {row['note']}" for row in rows if row["note"]),
            *int8_summary(rows, int8_hardware_note(document["machine"])), *fastest_accepted(rows)]


def fastest_accepted(rows: list[dict]) -> list[str]:
    """Per size and threads: the fastest configuration end to end among those that passed their gate, with its
    ratio to the baseline and the time outside the model (preprocessing + decode/NMS)."""
    lines = []
    for key in dict.fromkeys((row["size"], row["threads"]) for row in rows):
        passed = [row for row in rows if (row["size"], row["threads"]) == key and row["accepted"]]
        if not passed:
            continue
        best = min(passed, key=lambda row: row["total_ms"])
        ratio = f", {best['ratio']:.2f}x {' '.join(BASELINE)}" if best["ratio"] is not None else ""
        lines.append(f"fastest that passes its gate, {key[0]} {key[1]} threads: {best['backend']} "
                     f"{best['precision']}, {best['total_ms']:.2f} ms end to end{ratio} "
                     f"(pre+post {best['pre_ms'] + best['post_ms']:.2f} ms)")
    return lines


def read(path: Path) -> dict:
    """A bench JSON, checked against BENCH_JSON (only the rows and the machine: not "results", whose cache folder
    names a page never shows). Older files lack the newer columns: they are filled with None ('-')."""
    from .errors import UsageError
    from .json_input import checked, read_json

    document = read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("rows"), list) or not document["rows"]:
        raise UsageError(f"{path}: not a bench result (no 'rows')")
    document = checked(document, BENCH_JSON, path)
    for row in document["rows"]:
        for key, *_ in THROUGHPUT_COLUMNS + [("infer_vs_fp32",), ("total_min_ms",), ("agreement",),
                                             ("agreement_interval",)]:
            row.setdefault(key, None)
        if "accepted" not in row:  # before rows carried their verdict, a rejected export said so in its note
            row["accepted"] = False if row["note"].startswith("export over the parity budget") else None
    return document


COLUMNS = [("backend", "backend", "s"), ("precision", "prec", "s"), ("ran", "ran", "s"), ("size", "size", "s"),
           ("threads", "thr", "d"), ("pre_ms", "pre ms", ".2f"), ("infer_ms", "infer ms", ".2f"),
           ("post_ms", "post ms", ".2f"), ("total_ms", "total ms", ".2f"), ("total_p90_ms", "p90", ".2f"),
           ("ratio", "vs ORT fp32", ".2f"), ("infer_vs_fp32", "infer vs own fp32", ".2f"),
           ("overhead", "pre+post/infer", ".0%"),
           ("gflops_per_s", "GFLOP/s", ".1f"), ("size_mb", "MB", ".2f"), ("peak_rss_mb", "peak RSS MB", ".0f"),
           ("map", "mAP", ".4f"), ("agreement", "agree IoU.9", ".3f"), ("agreement_interval", "90%", "interval"),
           ("accepted", "gate", "verdict")]
# bench --mode throughput adds these
THROUGHPUT_COLUMNS = [("fps_sequential", "fps seq", ".1f"), ("fps_pipelined", "fps pipelined", ".1f"),
                      ("pipelined_x", "pipelined x", ".2f")]


def columns_of(rows: list[dict]) -> list[tuple[str, str, str]]:
    """The table's columns: the throughput ones only when they were measured."""
    measured = any(row.get("fps_sequential") is not None for row in rows)
    return COLUMNS + (THROUGHPUT_COLUMNS if measured else [])


def int8_summary(rows: list[dict], hardware_note: str = "") -> list[str]:
    """One line per backend, size and threads measured in INT8 and FP32 in this run: INT8 inference time over
    FP32's, said plainly when INT8 is not faster, with ``hardware_note`` (machine.int8_hardware_note) and the
    backend's measured INT8 cost (``Target.int8_cost``) as why."""
    lines = []
    for row in rows:
        if row["precision"] == "int8" and row["infer_vs_fp32"] is not None:
            ratio = row["infer_vs_fp32"]
            cost = (BACKENDS[row["backend"]].int8_cost() if row["backend"] in BACKENDS else "") or \
                "its INT8 path (requantization, layout changes, float layers) costs more than int8 saves"
            why = "; ".join(part for part in (hardware_note, cost) if part)
            verdict = "faster" if ratio < 1 else "NOT faster than FP32 on this machine" + (f": {why}" if why else "")
            lines.append(f"INT8 / FP32 inference, {row['backend']} {row['size']} {row['threads']} threads: "
                         f"{ratio:.2f}x ({verdict})")
    return lines


def format_value(value, fmt: str) -> str:
    """A table cell: ``value`` in ``fmt``, None as '-'; a verdict (fmt "verdict") as pass / OVER, an interval
    (fmt "interval") as low..high."""
    if value is None:
        return "-"
    if fmt == "verdict":
        return "pass" if value else "OVER"
    if fmt == "interval":
        return f"{value[0]:.3f}..{value[1]:.3f}"
    return format(value, fmt)


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A fixed-width text table: columns are (key, header, format); None prints as '-'."""
    widths = [max(len(header), *(len(format_value(row[key], fmt)) for row in rows)) for key, header, fmt in columns]
    lines = ["  ".join(header.rjust(w) for (_, header, _), w in zip(columns, widths))]
    lines += ["  ".join(format_value(row[key], fmt).rjust(w) for (key, _, fmt), w in zip(columns, widths)) for row in rows]
    return "\n".join(lines)


def markdown_table(rows: list[dict], columns=None) -> str:
    columns = columns or columns_of(rows)
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row[key], fmt) for key, _, fmt in columns) + " |" for row in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str = "") -> None:
    """``plot_figure`` written to ``path`` (PNG, or the format its suffix names)."""
    import matplotlib.pyplot as plt

    from .files import atomic_path

    fig = plot_figure(rows, title)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def plot_figure(rows: list[dict], title: str = ""):
    """Latency (end to end, median) against mAP: colour per backend, marker per precision. The mAP axis spans
    the artifacts that meet their budget; one far below (rejected) is drawn at the bottom edge and labelled
    with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {backend: row.colour for backend, row in BACKENDS.items()}
    markers = {"fp32": "o", "fp16": "s", "int8": "^", "bf16": "D"}
    measured = [r["map"] for r in rows if r["map"] is not None and r.get("accepted") is not False]
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
                   facecolors="none" if row.get("accepted") is False else None)
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
    return fig
