"""``report.html``: one self-contained page (inline CSS, images and plots; no network) per export, verify and
bench run, rendered by Jinja2 from the JSON those commands write — so ``nanodet-deploy report`` can rebuild it
later from ``parity.json`` / an export folder / a bench JSON.

What a reader decides with it: the verdict and budgets first, then the tensor errors, agreement and mAP with
their intervals, the classes that lost the most, and a strip of the images where the artifact's boxes differ
most from PyTorch's (both drawn, the unmatched ones marked); for bench, the table, the latency-vs-mAP plot, the
stage split per cell and the machine line. Paths shown are the ones the user gave (export folder, images);
anything the tool chose itself (cache folders, the resolved checkpoint) is shown by name only.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from .errors import UsageError

THUMBNAIL_WIDTH = 560  # px: the strip's images are downscaled to this (the boxes stay vector, in image pixels)


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("nanodet_deploy", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def _render(template: str, path: Path, source: Path, **context) -> Path:
    from . import __version__
    from .files import write_text_atomic

    import jinja2

    try:
        html = _environment().get_template(template).render(version=__version__, **context)
    except (jinja2.UndefinedError, TypeError, ValueError, KeyError, IndexError) as e:
        # a JSON file written by hand or by another version: a field of the wrong shape
        raise UsageError(f"{source}: cannot render a report from it ({e.__class__.__name__}: {e})") from None
    write_text_atomic(path, html)
    return path


def image_roots(images) -> list[Path]:
    """The folders a report may read images from, given what the user passed: a folder, a file, or a list of
    files (their folders)."""
    if images is None:
        return []
    paths = [Path(p) for p in images] if isinstance(images, (list, tuple)) else [Path(images)]
    return sorted({(p if p.is_dir() else p.parent).resolve() for p in paths})


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root) for root in roots)


def _jpeg_data_uri(image_path: str | None, roots: list[Path]) -> str | None:
    """The image downscaled to THUMBNAIL_WIDTH as a data: URI; None when it cannot be read any more or lies
    outside ``roots`` (a parity.json is untrusted input: it may name any file)."""
    if image_path is None or not _inside(Path(image_path), roots):
        return None
    import cv2

    from .errors import ImageError
    from .images import read_image

    try:
        image = read_image(Path(image_path))
    except (ImageError, OSError):
        return None
    if image.shape[1] > THUMBNAIL_WIDTH:
        scale = THUMBNAIL_WIDTH / image.shape[1]
        image = cv2.resize(image, (THUMBNAIL_WIDTH, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode() if ok else None


def _class_name(names: list[str] | None, label: int) -> str:
    return names[label] if names and 0 <= label < len(names) else str(label)


def _strip(artifact: dict, class_names: list[str] | None, roots: list[Path]) -> list[dict]:
    """The image strip of one artifact: each differing image with its picture and both sides' boxes."""
    strip = []
    for entry in artifact.get("differing_images") or []:
        sides = {}
        for side in ("reference", "artifact"):
            sides[side] = [{**d, "name": _class_name(class_names, d["label"])} for d in entry[side]]
        strip.append({**entry, "picture": _jpeg_data_uri(entry.get("image"), roots),
                      "shown_name": Path(entry["image"]).name if entry.get("image") else f"input {entry['index']}",
                      **sides})
    return strip


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot be read ({e.__class__.__name__})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(document, dict):
        raise UsageError(f"{path}: not a parity or bench result (a JSON object is expected)")
    return document


def parity_report(parity_json: Path, out: Path | None = None, images=None, label: str | None = None) -> Path:
    """``report.html`` beside ``parity_json`` (an export's or verify's), or at ``out``. The strip's pictures are
    read only from ``images`` (the folder or files the user gave; see ``image_roots``); ``label`` names the
    export folder on the page (default: the folder of ``parity_json``)."""
    from .export import REPORT_NAME
    from .manifest import MANIFEST_NAME, read_manifest

    parity_json = Path(parity_json)
    document = _read_json(parity_json)
    if not isinstance(document.get("artifacts"), list):
        raise UsageError(f"{parity_json}: not a parity.json (no 'artifacts' list)")
    folder = parity_json.parent
    manifest = None
    if (folder / MANIFEST_NAME).is_file():
        try:
            manifest = read_manifest(folder)
        except Exception:  # a report is still useful without the manifest's names
            manifest = None
    class_names = list(manifest.class_names) if manifest else None
    from .parity import ParityReport

    defaults = ParityReport(artifact="?", backend="?", precision="?", runtime_precision="?", inputs="?",
                            images=0).to_dict()
    artifacts = []
    for artifact in document["artifacts"]:
        if not isinstance(artifact, dict):
            raise UsageError(f"{parity_json}: an entry of 'artifacts' is not an object")
        artifact = {**defaults, **artifact}
        try:
            artifacts.append({**artifact, "strip": _strip(artifact, class_names, image_roots(images))})
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise UsageError(f"{parity_json}: malformed differing_images ({e.__class__.__name__}: {e})") from None
    summary = None
    if manifest is not None:
        summary = {"model": manifest.model, "backend": manifest.backend, "precision": manifest.precision,
                   "input": f"{manifest.input_width}x{manifest.input_height}", "input_format": manifest.input_format,
                   "classes": len(manifest.class_names),
                   "checkpoint": Path(str(manifest.conversion.get("checkpoint", ""))).name or None}
    return _render("parity.html.j2", Path(out) if out else folder / REPORT_NAME, parity_json,
                   folder=label or str(folder), summary=summary, artifacts=artifacts,
                   budgets=document.get("budgets") or {}, phone=_phone_rows(parity_json, document.get("phone")))


def _phone_rows(parity_json: Path, phone) -> list[dict]:
    """parity.json's "phone" list (--arch arm64) as the page shows it; a malformed entry is one line, exit 2."""
    if phone is None:
        return []
    if not isinstance(phone, list):
        raise UsageError(f"{parity_json}: 'phone' is not a list")
    rows = []
    try:
        for entry in phone:
            gate, versus = entry["gate"], entry["versus_export"]
            rows.append({"cpu": str(entry["cpu"]), "mode": str(entry["mode"]), "images": int(entry["images"]),
                         "required": _flag(entry, "required"),
                         "same_as_export": int(entry["same_as_export"]),
                         "app_decodes_as_toolkit": int(entry["app_decodes_as_toolkit"]),
                         "passed": entry["passed"] is True,
                         "failed": [str(c["metric"]) for c in gate["checks"] if c["passed"] is False],
                         "gate": {k: _number(gate.get(k)) for k in ("agreement", "map_artifact")}
                         | {"map_against": str(gate.get("map_against"))},
                         "versus_export": {k: _number(versus.get(k)) for k in ("agreement", "score_max_abs")}})
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{parity_json}: malformed 'phone' entry ({e.__class__.__name__}: {e})") from None
    return rows


def _flag(entry: dict, key: str) -> bool:
    """A true/false field of an untrusted entry: anything but a JSON boolean is malformed."""
    if not isinstance(entry[key], bool):
        raise TypeError(f"'{key}' is {type(entry[key]).__name__}, not true/false")
    return entry[key]


def _number(value):
    """A figure from untrusted JSON: a number, "nan"/"inf" as parity.json writes them, or None."""
    if value is None or isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return value


def bench_report(bench_json: Path, out: Path | None = None) -> Path:
    """The bench page beside ``bench_json`` (same name, .html), or at ``out``."""
    from . import bench_report as tables

    bench_json = Path(bench_json)
    document = _read_json(bench_json)
    rows = document.get("rows")
    if not isinstance(rows, list) or not rows:
        raise UsageError(f"{bench_json}: not a bench result (no 'rows')")
    machine = document.get("machine") if isinstance(document.get("machine"), dict) else {}
    try:  # the rows only (not "results": those name the cache folders the tool chose)
        longest = max(row["total_ms"] for row in rows) or 1.0
        for row in rows:
            row["bars"] = [(stage, row[key], 100 * row[key] / longest)
                           for stage, key in (("pre", "pre_ms"), ("inference", "infer_ms"), ("post", "post_ms"))]
        columns = tables.columns_of(rows)
        plot = _plot_data_uri(rows, machine)
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{bench_json}: malformed rows ({e.__class__.__name__}: {e})") from None
    return _render("bench.html.j2", Path(out) if out else bench_json.with_suffix(".html"), bench_json,
                   machine_line=document.get("machine_line") or _machine_line(machine), machine=machine, rows=rows,
                   columns=columns,
                   plot=plot, runs=document.get("runs"), mode=document.get("mode", "latency"),
                   int8_lines=tables.int8_summary(rows, _hardware_note(machine)), format_value=tables._fmt)


def _machine_line(machine: dict) -> str:
    from .bench import machine_line

    try:
        return machine_line(machine)
    except (KeyError, TypeError):
        return "machine not recorded"


def _hardware_note(machine: dict) -> str:
    from .bench import int8_hardware_note

    return int8_hardware_note(machine) if machine.get("isa") is not None else ""


def _plot_data_uri(rows: list[dict], machine: dict) -> str | None:
    """The latency-vs-mAP plot as an inline PNG; None without matplotlib (the `plot` extra)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib.pyplot as plt

    from . import bench_report as tables

    figure = tables.plot_figure(rows, title=f"nanodet-deploy bench · {machine.get('cpu', '')} · "
                                + " ".join(machine.get("isa") or []))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def build(path: str | Path, out: Path | None = None, images=None) -> Path:
    """``nanodet-deploy report``: an export folder (its parity.json), a parity.json or a bench JSON; the
    parity strip shows the pictures found in ``images``."""
    from .export import PARITY_NAME

    path = Path(path)
    if path.is_dir():
        if not (path / PARITY_NAME).is_file():
            raise UsageError(f"{path}: no {PARITY_NAME} in this folder (not an export or verify result)")
        return parity_report(path / PARITY_NAME, out, images)
    if not path.is_file():
        raise UsageError(f"{path}: no such file or folder")
    document = _read_json(path)
    if "artifacts" in document:
        return parity_report(path, out, images)
    if "rows" in document:
        return bench_report(path, out)
    raise UsageError(f"{path}: neither a parity.json nor a bench JSON")
