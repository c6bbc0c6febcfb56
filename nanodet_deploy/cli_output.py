"""What the CLI prints and how: the consoles, one line per error (with its exit code), progress bars, and the
rich tables — parity reports (one column per artifact), the emulated phone's rows, the summaries of ``infer`` and
``eval``. Printing only: every figure comes from the API's results."""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import NanodetDeployError
from .images import printable

console = Console()
err_console = Console(stderr=True)
STATE = {"debug": False}  # --debug: tracebacks instead of one-line errors


def one_line_errors(command):
    """NanodetDeployError -> "error: ..." on stderr and its exit code (2 usage/input, 1 failure); an OSError the
    library did not name -> one line, exit 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except NanodetDeployError as e:
            if STATE["debug"]:
                raise
            typer.echo(f"error: {printable(e)}", err=True)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # a file system failure the library did not name: still one line, no traceback
            if STATE["debug"]:
                raise
            where = f"{e.filename}: " if e.filename else ""
            typer.echo(f"error: {printable(where)}{printable(e.strerror or e)}", err=True)
            raise typer.Exit(1) from None
    return wrapper


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True)


def progress_factory(bar: Progress):
    """``progress(description, total)`` -> advance callable, as the library's long steps expect."""
    def start(description: str, total: int):
        task = bar.add_task(description, total=total)
        return lambda: bar.advance(task)
    return start


def error_line(message) -> None:
    """One line on stderr, as the user's text (no rich markup, file names made printable)."""
    err_console.print(f"error: {printable(message)}", markup=False, highlight=False, soft_wrap=True)





def figure(value, digits=4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (abs(value) < 1e-3 and value != 0):
        return f"{value:.1e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def parity_table(reports) -> Table:
    """One column per artifact, one row per measurement (fits a terminal for any number of artifacts)."""
    table = Table(title="parity against PyTorch (same input tensors)")
    table.add_column("")
    for r in reports:
        table.add_column(Path(r.artifact).name)

    def verdict(r):
        failed = [c["metric"] for c in r.checks if c["passed"] is False]
        unchecked = [c["metric"] for c in r.checks if c["passed"] is None]
        if failed:
            return "[red]REJECTED: " + ", ".join(failed) + "[/red]"
        return "[green]pass[/green]" + (f" ({', '.join(unchecked)} unchecked)" if unchecked else "")

    rows = [
        ("backend", lambda r: r.backend),
        ("precision (ran)", lambda r: f"{r.precision} ({r.runtime_precision})"),
        ("inputs", lambda r: f"{r.images} {r.inputs}"),
        ("scores max-abs / cos", lambda r: f"{figure(r.score_max_abs)} / {figure(r.score_cosine, 6)}"),
        ("distances max-abs / cos", lambda r: f"{figure(r.distance_max_abs)} / {figure(r.distance_cosine, 6)}"),
        ("agreement (≥0.3, IoU≥0.9)", lambda r: "-" if r.agreement is None else
            f"{r.agreement:.4f} of {r.reference_detections}" + _interval(r.agreement_interval, 1, 3)),
        ("mAP reference → artifact", lambda r: "-" if r.map_artifact is None else
            f"{r.map_reference:.4f} → {r.map_artifact:.4f} vs {r.map_against}"),
        ("mAP points lost", lambda r: "-" if r.map_drop_points is None else
            f"{r.map_drop_points:.2f}" + _interval(r.map_drop_points_interval, 1, 2)),
        ("mAP points lost by class", lambda r: "-" if not r.map_lost_by_class else ", ".join(
            f"{x['class']} ({x['instances']} obj) {x['points_lost']:.2f}" for x in r.map_lost_by_class[:3])),
        ("budgets", lambda r: ", ".join(f"{c['metric']} {c['budget']}" for c in r.checks)),
        ("verdict", verdict),
    ]
    for name, cell in rows:
        table.add_row(name, *(cell(r) for r in reports))
    notes = [c["note"] for r in reports for c in r.checks if c.get("note") and c["metric"] == "map_drop_points"]
    if notes:
        table.caption = "; ".join(notes)
    return table


def phone_table(reports) -> Table:
    """One row per emulated CPU model x app mode."""
    table = Table(title="the app on ncnn's ARM64 kernels (emulated) against this machine's export and PyTorch")
    for column in ("CPU model", "mode", "same detections as here", "agreement vs here", "scores max-abs vs here",
                   "agreement vs PyTorch", "mAP", "verdict"):
        table.add_column(column)
    for p in reports:
        g, v = p.gate, p.versus_export
        failed = [c["metric"] for c in g.checks if c["passed"] is False] + \
            (["app decoding"] if p.app_decodes_as_toolkit != p.images else [])
        colour = "red" if p.required else "yellow"  # fast fp16 is the user's opt-in: reported, not gated
        table.add_row(p.cpu, p.mode, f"{p.same_as_export}/{p.images}", figure(v.agreement), figure(v.score_max_abs),
                      figure(g.agreement), "-" if g.map_artifact is None else f"{g.map_artifact:.4f} vs {g.map_against}",
                      f"[{colour}]over budget: " + ", ".join(failed) + f"[/{colour}]" if failed
                      else "[green]pass[/green]")
    return table


def _interval(bounds, scale: float, digits: int) -> str:
    """" (90% a .. b)" for a bootstrap interval, "" without one."""
    return "" if not bounds else f" (90% {scale * bounds[0]:.{digits}f} .. {scale * bounds[1]:.{digits}f})"




def detections_table(title: str, entries: list[dict], shown: int = 20) -> Table:
    """``infer``'s summary: per image the detections, those scoring 0.3 or more, and the best one."""
    table = Table(title=title)
    for column in ("image", "detections", "≥ 0.3", "best"):
        table.add_column(column)
    for entry in entries[:shown]:
        dets = entry["detections"]
        best = f"{dets[0]['name']} {dets[0]['score']:.2f}" if dets else "-"
        table.add_row(printable(Path(entry["image"]).name), str(len(dets)), str(sum(d["score"] >= 0.3 for d in dets)),
                      best)
    if len(entries) > shown:
        table.add_row(f"… {len(entries) - shown} more", "", "", "")
    return table


def metrics_table(title: str, metrics: dict) -> Table:
    """``eval``'s COCO metrics in one row."""
    table = Table(title=title)
    for name in metrics:
        table.add_column(name)
    table.add_row(*(f"{v:.4f}" for v in metrics.values()))
    return table
