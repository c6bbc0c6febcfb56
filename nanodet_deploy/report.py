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
from pathlib import Path

from .errors import UsageError
from .json_input import Flag, ListOf, MapOf, Number, Optional, Record, Text, Whole, checked, read_json

THUMBNAIL_WIDTH = 560  # px: the strip's images are downscaled to this (the boxes stay vector, in image pixels)


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("nanodet_deploy", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def _render(template: str, path: Path, source: Path, **context) -> Path:
    from .version import __version__
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
    """The top-level object of a result JSON, read under json_input's limits (a regular file, its size, depth)."""
    document = read_json(path)
    if not isinstance(document, dict):
        raise UsageError(f"{path}: not a parity or bench result (a JSON object is expected)")
    return document


# The fields a parity page reads, typed (json_input). They follow what writes them: parity.ParityReport and
# phone.PhoneReport; tests/test_report.py keeps the field lists equal. (The bench JSON's: bench_results.)
_FIGURE, _TEXT = Number(), Text()
_DETECTION = Record({"label": Whole(), "score": Number(finite=True), "box": ListOf(Number(finite=True), 4, 4),
                     "matched": Flag()})
_DIFFERING_IMAGE = Record({"index": Whole(), "image": Optional(_TEXT), "width": Whole(1), "height": Whole(1),
                           "differences": Whole(), "score_max_abs": _FIGURE, "reference": ListOf(_DETECTION),
                           "artifact": ListOf(_DETECTION)}, optional=("differences", "score_max_abs"))
_CHECK = Record({"metric": _TEXT, "budget": _TEXT, "value": Optional(_FIGURE), "passed": Optional(Flag()),
                 "note": _TEXT, "interval": ListOf(_FIGURE, 2, 2)}, optional=("budget", "note", "interval"))
_CLASS_LOSS = Record({"class": _TEXT, "category_id": Whole(), "instances": Whole(), "ap_reference": _FIGURE,
                      "ap_artifact": _FIGURE, "points_lost": Number(finite=True)})
_INTERVAL = Optional(ListOf(_FIGURE, 2, 2))
ARTIFACT_FIELDS = {
    "artifact": _TEXT, "backend": _TEXT, "precision": _TEXT, "runtime_precision": _TEXT, "inputs": _TEXT,
    "images": Whole(), "nonfinite_outputs": Whole(), "score_max_abs": _FIGURE, "score_cosine": _FIGURE,
    "distance_max_abs": _FIGURE, "distance_cosine": _FIGURE, "agreement": Optional(_FIGURE),
    "reference_detections": Optional(Whole()), "map_against": Optional(_TEXT), "map_reference": Optional(_FIGURE),
    "map_artifact": Optional(_FIGURE), "map_drop_points": Optional(_FIGURE),
    "map_lost_by_class": Optional(ListOf(_CLASS_LOSS)), "map_drop_points_interval": _INTERVAL,
    "agreement_interval": _INTERVAL, "differing_images": ListOf(_DIFFERING_IMAGE), "checks": ListOf(_CHECK),
    "passed": Flag()}
# the identity of the artifact is required; every figure may be absent (an older parity.json): its default shows
_ARTIFACT = Record(ARTIFACT_FIELDS, optional=set(ARTIFACT_FIELDS) - {"artifact", "backend", "precision"})
PHONE_FIELDS = {"cpu": _TEXT, "mode": _TEXT, "fast_fp16": Flag(), "images": Whole(), "passed": Flag(),
                "required": Flag(), "same_as_export": Whole(), "app_decodes_as_toolkit": Whole(),
                "same_bits_as_first_cpu": Whole(), "same_tolerance": MapOf(_FIGURE), "gate": _ARTIFACT,
                "versus_export": _ARTIFACT}
PARITY_JSON = Record({"budgets": MapOf(_FIGURE), "artifacts": ListOf(_ARTIFACT, 1),
                      "phone": ListOf(Record(PHONE_FIELDS, optional=("same_bits_as_first_cpu", "same_tolerance")))},
                     optional=("budgets", "phone"))
def read_parity(parity_json: Path) -> dict:
    """A parity.json (an export's or verify's) checked against PARITY_JSON: a file is untrusted input."""
    document = _read_json(parity_json)
    if not isinstance(document.get("artifacts"), list):
        raise UsageError(f"{parity_json}: not a parity.json (no 'artifacts' list)")
    return checked(document, PARITY_JSON, parity_json)


def parity_page(parity_json: Path, out: Path | None = None, images=None, label: str | None = None) -> Path:
    """``report.html`` beside ``parity_json`` (an export's or verify's), or at ``out``. The strip's pictures are
    read only from ``images`` (the folder or files the user gave; see ``image_roots``); ``label`` names the
    export folder on the page (default: the folder of ``parity_json``)."""
    from .manifest import MANIFEST_NAME, REPORT_NAME, read_manifest

    parity_json = Path(parity_json)
    document = read_parity(parity_json)
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
        artifact = {**defaults, **artifact}
        artifacts.append({**artifact, "strip": _strip(artifact, class_names, image_roots(images))})
    summary = None
    if manifest is not None:
        summary = {"model": manifest.model, "backend": manifest.backend, "precision": manifest.precision,
                   "input": f"{manifest.input_width}x{manifest.input_height}", "input_format": manifest.input_format,
                   "classes": len(manifest.class_names),
                   "checkpoint": Path(str(manifest.conversion.get("checkpoint", ""))).name or None}
    return _render("parity.html.j2", Path(out) if out else folder / REPORT_NAME, parity_json,
                   folder=label or str(folder), summary=summary, artifacts=artifacts,
                   budgets=document.get("budgets") or {}, phone=_phone_rows(document.get("phone") or []))


def _phone_rows(phone: list[dict]) -> list[dict]:
    """parity.json's "phone" list (--arch arm64, checked by PARITY_JSON) as the page shows it."""
    return [{**{k: entry[k] for k in ("cpu", "mode", "images", "required", "same_as_export",
                                      "app_decodes_as_toolkit", "passed")},
             "failed": [c["metric"] for c in entry["gate"]["checks"] if c["passed"] is False],
             "gate": {k: entry["gate"].get(k) for k in ("agreement", "map_artifact", "map_against")},
             "versus_export": {k: entry["versus_export"].get(k) for k in ("agreement", "score_max_abs")}}
            for entry in phone]


def bench_page(bench_json: Path, out: Path | None = None) -> Path:
    """The bench page beside ``bench_json`` (same name, .html), or at ``out``."""
    from . import bench_results
    from .machine import int8_hardware_note, machine_line

    bench_json = Path(bench_json)
    document = bench_results.read(bench_json)
    rows, machine = document["rows"], document.get("machine") or {}
    longest = max(row["total_ms"] for row in rows) or 1.0
    for row in rows:
        row["bars"] = [(stage, row[key], 100 * row[key] / longest)
                       for stage, key in (("pre", "pre_ms"), ("inference", "infer_ms"), ("post", "post_ms"))]
    try:
        line = document.get("machine_line") or machine_line(machine)
    except (KeyError, TypeError):
        line = "machine not recorded"
    hardware_note = int8_hardware_note(machine) if machine.get("isa") is not None else ""
    return _render("bench.html.j2", Path(out) if out else bench_json.with_suffix(".html"), bench_json,
                   machine_line=line, machine=machine, rows=rows, columns=bench_results.columns_of(rows),
                   plot=_plot_data_uri(rows, machine), runs=document.get("runs"), mode=document.get("mode", "latency"),
                   int8_lines=bench_results.int8_summary(rows, hardware_note), format_value=bench_results.format_value)


def _plot_data_uri(rows: list[dict], machine: dict) -> str | None:
    """The latency-vs-mAP plot as an inline PNG; None without matplotlib (the `plot` extra)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib.pyplot as plt

    from .bench_results import plot_figure

    figure = plot_figure(rows, title=f"nanodet-deploy bench · {machine.get('cpu', '')} · "
                                + " ".join(machine.get("isa") or []))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def build(path: str | Path, out: Path | None = None, images=None) -> Path:
    """``nanodet-deploy report``: an export folder (its parity.json), a parity.json or a bench JSON; the
    parity strip shows the pictures found in ``images``."""
    from .manifest import PARITY_NAME

    path = Path(path)
    if path.is_dir():
        if not (path / PARITY_NAME).is_file():
            raise UsageError(f"{path}: no {PARITY_NAME} in this folder (not an export or verify result)")
        return parity_page(path / PARITY_NAME, out, images)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    document = _read_json(path)
    if "artifacts" in document:
        return parity_page(path, out, images)
    if "rows" in document:
        return bench_page(path, out)
    raise UsageError(f"{path}: neither a parity.json nor a bench JSON")
