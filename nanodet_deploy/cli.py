"""``nanodet-deploy``: a thin typer layer over the Python API. It parses options, calls the API, prints rich
tables, and turns NanodetDeployError into one line on stderr and an exit code (2 usage/input, 1 failure)."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import ImageError, NanodetDeployError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Take NanoDet-Plus from PyTorch to ONNX Runtime, OpenVINO, MNN and ncnn — and check "
                       "every artifact against PyTorch.")
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")] = False):
    _state["debug"] = debug


def _one_line_errors(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except NanodetDeployError as e:
            if _state["debug"]:
                raise
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
    return wrapper


def _parse_size(value: Optional[str]) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.replace("x", ",").split(",")]
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not W or W,H") from None
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise typer.BadParameter(f"'{value}' is not W or W,H")
    return (parts[0], parts[-1])


# Options shared by every command that builds a model.
Checkpoint = Annotated[Optional[str], typer.Option(
    "--checkpoint", "-c", help="Checkpoint file (.pth/.ckpt, any official layout) or a zoo name to download "
                               "once, e.g. nanodet-plus-m_416.")]
ModelName = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Preset: nanodet-plus-m_320, nanodet-plus-m_416, nanodet-plus-m-1.5x_320, "
                          "nanodet-plus-m-1.5x_416. Default: taken from the checkpoint's name.")]
Config = Annotated[Optional[Path], typer.Option(
    "--config", help="Official NanoDet training YAML, for self-trained models (classes, widths, size).")]
InputSize = Annotated[Optional[str], typer.Option(
    "--input-size", help="Network input W or W,H (multiples of 32); default from the model.")]
KeepRatio = Annotated[Optional[bool], typer.Option(
    "--keep-ratio/--stretch", help="Letterbox keeping the aspect ratio, or stretch (NanoDet's default).")]
Backend = Annotated[str, typer.Option("--backend", "-b", help="Runtime backend.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for the runtime.")]
ScoreThr = Annotated[float, typer.Option("--score-thr", min=0.0, max=1.0,
                                         help="Candidate score threshold (NanoDet's eval default 0.05).")]
UnsafeLoad = Annotated[bool, typer.Option(
    "--unsafe-load", help="Allow checkpoints holding arbitrary pickled objects. Unpickling can run code: "
                          "only for files you trust.")]


def _detector(backend, checkpoint, model, config, input_size, keep_ratio, threads, score_thr, unsafe_load):
    from .detector import Detector

    return Detector(backend=backend, checkpoint=checkpoint, model=model, config=config,
                    input_size=_parse_size(input_size), keep_ratio=keep_ratio, threads=threads,
                    score_thr=score_thr, unsafe_load=unsafe_load)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True)


@app.command()
@_one_line_errors
def infer(
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    checkpoint: Checkpoint = None, model: ModelName = None, config: Config = None,
    input_size: InputSize = None, keep_ratio: KeepRatio = None, backend: Backend = "torch",
    threads: Threads = None, score_thr: ScoreThr = 0.05, unsafe_load: UnsafeLoad = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write detections as JSON here.")] = None,
    save_vis: Annotated[Optional[Path], typer.Option("--save-vis", help="Write images with boxes here.")] = None,
):
    """Detect objects in images; optionally write the JSON contract (see README) and drawn images.

    Exit code 1 if any image could not be read (each is reported on one line), 2 for usage errors."""
    import cv2

    from .files import atomic_path, write_text_atomic
    from .images import collect_images, draw_detections, read_image

    paths = collect_images(images)
    detector = _detector(backend, checkpoint, model, config, input_size, keep_ratio, threads, score_thr,
                         unsafe_load)
    entries, failed, started = [], 0, time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("detecting", total=len(paths))
        for path in paths:
            bar.advance(task)
            try:
                image = read_image(path)
            except ImageError as e:
                err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
                failed += 1
                continue
            dets = detector(image)
            entries.append({"image": str(path), "width": image.shape[1], "height": image.shape[0],
                            "detections": dets.to_list(detector.class_names)})
            if save_vis:
                with atomic_path(save_vis / f"{path.stem}.jpg") as tmp:
                    ok, encoded = cv2.imencode(".jpg", draw_detections(image, dets, detector.class_names))
                    tmp.write_bytes(encoded.tobytes())
    elapsed = time.perf_counter() - started
    if json_out:
        write_text_atomic(json_out, json.dumps(entries))
    table = Table(title=f"{detector.spec.name} · {backend} · {len(entries)} images")
    for column in ("image", "detections", "≥ 0.3", "best"):
        table.add_column(column)
    for entry in entries[:20]:
        dets = entry["detections"]
        best = f"{dets[0]['name']} {dets[0]['score']:.2f}" if dets else "-"
        table.add_row(Path(entry["image"]).name, str(len(dets)), str(sum(d["score"] >= 0.3 for d in dets)), best)
    if len(entries) > 20:
        table.add_row(f"… {len(entries) - 20} more", "", "", "")
    console.print(table)
    console.print(f"{len(entries)} images in {elapsed:.1f} s"
                  + (f", JSON: {json_out}" if json_out else "") + (f", images: {save_vis}" if save_vis else ""))
    if failed:
        err_console.print(f"{failed} of {len(paths)} images failed")
        raise typer.Exit(1)


@app.command("eval")
@_one_line_errors
def eval_command(
    images: Annotated[Path, typer.Option("--images", help="Folder of the annotated images.")],
    ann: Annotated[Path, typer.Option("--ann", help="COCO instances JSON.")],
    checkpoint: Checkpoint = None, model: ModelName = None, config: Config = None,
    input_size: InputSize = None, keep_ratio: KeepRatio = None, backend: Backend = "torch",
    threads: Threads = None, score_thr: ScoreThr = 0.05, unsafe_load: UnsafeLoad = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here.")] = None,
):
    """COCO bbox mAP on annotated images (class i <-> i-th category id in ascending order)."""
    from .evaluate import CocoSet, evaluate
    from .files import write_text_atomic

    coco_set = CocoSet.load(images, ann)
    detector = _detector(backend, checkpoint, model, config, input_size, keep_ratio, threads, score_thr,
                         unsafe_load)
    with _progress() as bar:
        task = bar.add_task("evaluating", total=len(coco_set.images))
        metrics = evaluate(detector, coco_set, detector.spec.num_classes, progress=lambda: bar.advance(task))
    table = Table(title=f"{detector.spec.name} · {backend} · {len(coco_set.images)} images of {ann.name}")
    for name in metrics:
        table.add_column(name)
    table.add_row(*(f"{v:.4f}" for v in metrics.values()))
    console.print(table)
    if json_out:
        write_text_atomic(json_out, json.dumps({
            "model": detector.spec.name, "backend": backend, "images": str(images), "ann": str(ann),
            "num_images": len(coco_set.images), "checkpoint_sha256": detector.checkpoint_sha256, **metrics},
            indent=1))


@app.command()
def models():
    """List the built-in presets and their official checkpoints."""
    from .model.zoo import PRESETS, ZOO, cache_dir

    table = Table(title="presets")
    for column in ("name", "input W×H", "classes", "backbone"):
        table.add_column(column, no_wrap=True)
    for name, spec in PRESETS.items():
        table.add_row(name, "×".join(map(str, spec.input_size)), str(spec.num_classes),
                      f"ShuffleNetV2 {spec.backbone['model_size']}")
    console.print(table)
    console.print(f"--checkpoint NAME downloads {ZOO[name].url.replace(name, 'NAME')} once into {cache_dir()} "
                  "(NANODET_DEPLOY_CACHE overrides)", soft_wrap=True)


def main():
    app()
