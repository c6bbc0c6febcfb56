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

from .errors import ImageError, ModelOutputError, NanodetDeployError, UsageError
from .images import printable

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
            typer.echo(f"error: {printable(e)}", err=True)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # a file system failure the library did not name: still one line, no traceback
            if _state["debug"]:
                raise
            where = f"{e.filename}: " if e.filename else ""
            typer.echo(f"error: {printable(where)}{printable(e.strerror or e)}", err=True)
            raise typer.Exit(1) from None
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


def _backend_list() -> str:
    from .targets import BACKENDS

    return ", ".join(BACKENDS)


def _target_list() -> str:
    from .targets import TARGETS

    return ", ".join(f"{t.name} ({t.description})" for t in TARGETS.values())


def _int8_help(what: str) -> str:
    """Each target's INT8 calibration methods (default first) or default float parts, from its converter."""
    import importlib

    from .targets import TARGETS

    parts = []
    for t in TARGETS.values():
        module = importlib.import_module(f"{__package__}.converters.{t.converter}")
        method, float_parts = t.int8_defaults()
        if what == "methods" and module.CALIBRATION_METHODS:
            others = [m for m in module.CALIBRATION_METHODS if m != method]
            parts.append(f"{t.name} {' | '.join([method, *others])}")
        elif what == "parts":
            known = [*module.FLOAT_PARTS, *(["auto"] if "auto" in float_parts else [])]
            parts.append(f"{t.name} {','.join(float_parts) or 'none'} (of {', '.join(known)})")
    return "; ".join(parts)


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


HtmlReport = Annotated[bool, typer.Option(
    "--report/--no-report", help="Write report.html beside the JSON: one self-contained page (verdict, errors, "
                                 "the images where the boxes differ; for bench the table and plots).")]
InferPrecision = Annotated[Optional[str], typer.Option(
    "--infer-precision", help="OpenVINO: f32 (default, exact) or bf16 (faster on CPUs with AVX-512 BF16).")]
Arch = Annotated[str, typer.Option(
    "--arch", help="host: the gate on this machine. arm64: also the Android app's detector on ncnn's ARM64 "
                   "kernels, emulated by qemu for each --cpu model in each mode the app offers (ncnn exports; needs "
                   "the apt packages qemu-user and g++-aarch64-linux-gnu; the program is built once into "
                   "~/.cache/nanodet-deploy). Emulation is slow: a few seconds per image and mode.")]
PhoneCpus = Annotated[Optional[str], typer.Option(
    "--cpu", help="--arch arm64: qemu CPU models, comma-separated: cortex-a53 (ARMv8.0), cortex-a76 (ARMv8.2: fp16 "
                  "arithmetic, dot product), max (+ i8mm, bf16, SVE). Default cortex-a53,cortex-a76.")]
ExportDir = Annotated[Optional[Path], typer.Option(
    "--export", "-e", help="Export folder (from `nanodet-deploy export`): runs its artifact with its own "
                           "backend; needs no other model option.")]


def _detector(export, backend, checkpoint, model, config, input_size, keep_ratio, threads, score_thr,
              unsafe_load, infer_precision=None, streams=None):
    from .detector import Detector

    if export is not None:
        if checkpoint or model or config or input_size or keep_ratio is not None:
            raise typer.BadParameter("--export describes the model itself: drop --checkpoint/--model/"
                                     "--config/--input-size/--keep-ratio")
        return Detector.from_export(export, threads=threads, score_thr=score_thr, infer_precision=infer_precision,
                                    streams=streams)
    if infer_precision or streams:
        raise typer.BadParameter(f"{'--infer-precision' if infer_precision else '--streams'} applies to --export "
                                 "folders of OpenVINO")
    return Detector(backend=backend, checkpoint=checkpoint, model=model, config=config,
                    input_size=_parse_size(input_size), keep_ratio=keep_ratio, threads=threads,
                    score_thr=score_thr, unsafe_load=unsafe_load)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True)


@app.command()
@_one_line_errors
def infer(
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images; or video files "
                                                      "(.mp4, .avi, ...) and cameras (camera:0).")],
    export: ExportDir = None, checkpoint: Checkpoint = None, model: ModelName = None, config: Config = None,
    input_size: InputSize = None, keep_ratio: KeepRatio = None, backend: Backend = "torch",
    threads: Threads = None, score_thr: ScoreThr = 0.05, unsafe_load: UnsafeLoad = False,
    infer_precision: InferPrecision = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write detections as JSON here.")] = None,
    save_vis: Annotated[Optional[Path], typer.Option("--save-vis", help="Write images (videos: .mp4) with boxes "
                                                     "here.")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Videos and cameras: stop after "
                                                      "this many frames (a camera runs until Ctrl-C without it).")]
    = None,
    pipeline: Annotated[bool, typer.Option("--pipeline/--sequential", help="Videos and cameras: overlap "
                                           "pre/postprocessing of neighbouring frames with inference.")] = True,
    streams: Annotated[Optional[int], typer.Option("--streams", min=1, max=64, help="OpenVINO exports, videos and "
                                                   "cameras: throughput mode, this many frames inferred at once "
                                                   "(the threads split between them; 2 on 2 cores).")] = None,
):
    """Detect objects in images, videos or camera frames; optionally write the JSON contract (see README) and
    drawn images. Videos and cameras write one JSON line per frame (--json) and an .mp4 with boxes (--save-vis);
    a run that lost frames or was stopped publishes them as NAME.partial.EXT, the JSON lines ending with a record
    of what is missing.

    Exit code 1 if any image could not be read or a video lost frames (each is reported on one line), 2 for
    usage errors, 130 / 143 after Ctrl-C / SIGTERM (Ctrl-C is an endless camera's normal end: 0)."""
    import cv2

    from .files import atomic_path, write_text_atomic
    from .images import collect_images, draw_detections, json_path, read_image
    from .streaming import check_sources, is_video_source

    videos = [source for source in images if is_video_source(source)]
    if videos and len(videos) != len(images):
        raise UsageError("give images or videos/cameras, not both in one run")
    check_sources(videos)
    paths = [] if videos else collect_images(images)
    detector = _detector(export, backend, checkpoint, model, config, input_size, keep_ratio, threads,
                         score_thr, unsafe_load, infer_precision, streams)
    if videos:
        _infer_videos(detector, videos, json_out, save_vis, max_frames, pipeline)
        return
    entries, failed, started = [], 0, time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("detecting", total=len(paths))
        for path in paths:
            bar.advance(task)
            try:
                image = read_image(path)
            except ImageError as e:
                err_console.print(f"error: {printable(e)}", markup=False, highlight=False, soft_wrap=True)
                failed += 1
                continue
            try:
                dets = detector(image)
            except ModelOutputError as e:  # one line naming the image, the run stops: the model is broken
                raise ModelOutputError(f"{path}: {e}") from None
            entries.append({"image": json_path(path), "width": image.shape[1], "height": image.shape[0],
                            "detections": dets.to_list(detector.class_names)})
            if save_vis:
                with atomic_path(save_vis / f"{path.stem}.jpg") as tmp:
                    ok, encoded = cv2.imencode(".jpg", draw_detections(image, dets, detector.class_names))
                    tmp.write_bytes(encoded.tobytes())
    elapsed = time.perf_counter() - started
    if json_out:
        write_text_atomic(json_out, json.dumps(entries))
    runtime = detector.runtime
    table = Table(title=f"{detector.name} · {runtime.backend} {runtime.precision} · {len(entries)} images")
    for column in ("image", "detections", "≥ 0.3", "best"):
        table.add_column(column)
    for entry in entries[:20]:
        dets = entry["detections"]
        best = f"{dets[0]['name']} {dets[0]['score']:.2f}" if dets else "-"
        table.add_row(printable(Path(entry["image"]).name), str(len(dets)), str(sum(d["score"] >= 0.3 for d in dets)), best)
    if len(entries) > 20:
        table.add_row(f"… {len(entries) - 20} more", "", "", "")
    console.print(table)
    console.print(f"{len(entries)} images in {elapsed:.1f} s"
                  + (f", JSON: {json_out}" if json_out else "") + (f", images: {save_vis}" if save_vis else ""))
    if failed:
        err_console.print(f"{failed} of {len(paths)} images failed")
        raise typer.Exit(1)


def _infer_videos(detector, sources, json_out, save_vis, max_frames, pipeline) -> None:
    """``infer`` on video files and cameras (videos.detect_videos): a line per source; exit 1 when frames were
    lost, Ctrl-C / SIGTERM raised again after the partial outputs are published."""
    from .videos import detect_videos

    def done(result):
        kind = "pipelined" if pipeline else "sequential"
        console.print(f"{printable(result.source)}: {result.frames} frames in {result.seconds:.1f} s "
                      f"({result.frames / max(result.seconds, 1e-9):.1f} FPS, {kind})"
                      + (f", video: {printable(result.video)}" if result.video else ""), soft_wrap=True, markup=False)
        if result.problem():
            err_console.print(f"error: {printable(result.source)}: {result.problem()}", markup=False,
                              highlight=False, soft_wrap=True)

    with _progress() as bar:
        run = detect_videos(detector, sources, json_out, save_vis, max_frames, pipeline, _progress_factory(bar),
                            on_source=done)
    if run.json:
        console.print(f"JSON lines: {printable(run.json)}" + ("" if run.complete else " (partial: its last line "
                      "records what is missing)"), soft_wrap=True, markup=False)
    if run.not_started:
        err_console.print(f"not started: {', '.join(map(printable, run.not_started))}", markup=False,
                          highlight=False, soft_wrap=True)
    if run.interrupt is not None:
        raise run.interrupt
    if not run.complete:
        raise typer.Exit(1)


@app.command("eval")
@_one_line_errors
def eval_command(
    images: Annotated[Path, typer.Option("--images", help="Folder of the annotated images.")],
    ann: Annotated[Path, typer.Option("--ann", help="COCO instances JSON.")],
    export: ExportDir = None, checkpoint: Checkpoint = None, model: ModelName = None, config: Config = None,
    input_size: InputSize = None, keep_ratio: KeepRatio = None, backend: Backend = "torch",
    threads: Threads = None, score_thr: ScoreThr = 0.05, unsafe_load: UnsafeLoad = False,
    infer_precision: InferPrecision = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here.")] = None,
):
    """COCO bbox mAP on annotated images (class i <-> i-th category id in ascending order)."""
    from .evaluate import CocoSet, evaluate
    from .files import write_text_atomic

    coco_set = CocoSet.load(images, ann)
    detector = _detector(export, backend, checkpoint, model, config, input_size, keep_ratio, threads,
                         score_thr, unsafe_load, infer_precision)
    with _progress() as bar:
        task = bar.add_task("evaluating", total=len(coco_set.images))
        metrics = evaluate(detector, coco_set, len(detector.class_names), progress=lambda: bar.advance(task))
    runtime = detector.runtime
    table = Table(title=f"{detector.name} · {runtime.backend} {runtime.precision} · "
                        f"{len(coco_set.images)} images of {ann.name}")
    for name in metrics:
        table.add_column(name)
    table.add_row(*(f"{v:.4f}" for v in metrics.values()))
    console.print(table)
    if json_out:
        write_text_atomic(json_out, json.dumps({
            "model": detector.name, "backend": detector.runtime.backend,
            "precision": detector.runtime.precision, "images": str(images), "ann": str(ann),
            "num_images": len(coco_set.images), "checkpoint_sha256": detector.checkpoint_sha256, **metrics},
            indent=1))


def _progress_factory(bar: Progress):
    """``progress(description, total)`` -> advance callable, as the library's long steps expect."""
    def start(description: str, total: int):
        task = bar.add_task(description, total=total)
        return lambda: bar.advance(task)
    return start


def _fmt(value, digits=4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (abs(value) < 1e-3 and value != 0):
        return f"{value:.1e}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _parity_table(reports) -> Table:
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
        ("scores max-abs / cos", lambda r: f"{_fmt(r.score_max_abs)} / {_fmt(r.score_cosine, 6)}"),
        ("distances max-abs / cos", lambda r: f"{_fmt(r.distance_max_abs)} / {_fmt(r.distance_cosine, 6)}"),
        ("agreement (≥0.3, IoU≥0.9)", lambda r: "-" if r.agreement is None else
            f"{r.agreement:.4f} of {r.reference_detections}" + _interval(r.agreement_interval, 1, 3)),
        ("mAP reference → artifact", lambda r: "-" if r.map_artifact is None else
            f"{r.map_reference:.4f} → {r.map_artifact:.4f} vs {r.map_against}"),
        ("mAP points lost", lambda r: "-" if r.map_drop is None else
            f"{100 * r.map_drop:.2f}" + _interval(r.map_drop_interval, 100, 2)),
        ("mAP points lost by class", lambda r: "-" if not r.map_drop_by_class else ", ".join(
            f"{x['class']} ({x['instances']} obj) {x['map_points']:.2f}" for x in r.map_drop_by_class[:3])),
        ("budgets", lambda r: ", ".join(f"{c['metric']} {c['budget']}" for c in r.checks)),
        ("verdict", verdict),
    ]
    for name, cell in rows:
        table.add_row(name, *(cell(r) for r in reports))
    notes = [c["note"] for r in reports for c in r.checks if c.get("note") and c["metric"] == "map_drop"]
    if notes:
        table.caption = "; ".join(notes)
    return table


def _phone_cpus(arch: str, cpu: str | None):
    """The CPU models to emulate (None for --arch host)."""
    from .phone import DEFAULT_CPUS

    if arch not in ("host", "arm64"):
        raise typer.BadParameter(f"--arch must be host or arm64, got '{arch}'")
    if arch != "arm64":
        if cpu is not None:
            raise typer.BadParameter("--cpu needs --arch arm64")
        return None
    return DEFAULT_CPUS if cpu is None else tuple(c for c in cpu.split(",") if c)


def _phone_table(reports) -> Table:
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
        table.add_row(p.cpu, p.mode, f"{p.same_as_export}/{p.images}", _fmt(v.agreement), _fmt(v.score_max_abs),
                      _fmt(g.agreement), "-" if g.map_artifact is None else f"{g.map_artifact:.4f} vs {g.map_against}",
                      f"[{colour}]over budget: " + ", ".join(failed) + f"[/{colour}]" if failed
                      else "[green]pass[/green]")
    return table


def _interval(bounds, scale: float, digits: int) -> str:
    """" (90% a .. b)" for a bootstrap interval, "" without one."""
    return "" if not bounds else f" (90% {scale * bounds[0]:.{digits}f} .. {scale * bounds[1]:.{digits}f})"


MaxScoreErr = Annotated[float, typer.Option("--max-score-err", help="FP32 budget: max-abs error of scores.")]
MinAgreement = Annotated[float, typer.Option("--min-agreement", help="FP16 budget: detection agreement.")]
MaxMapDrop = Annotated[float, typer.Option("--max-map-drop", help="INT8 budget: mAP drop (0.01 = 1 point).")]


def _budgets(max_score_err, min_agreement, max_map_drop):
    from .parity import Budgets

    return Budgets(fp32_score_max_abs=max_score_err, fp16_agreement=min_agreement, int8_map_drop=max_map_drop)


@app.command()
@_one_line_errors
def export(
    to: Annotated[str, typer.Option("--to", help=f"Target: {_target_list()}.")] = "onnx",
    out: Annotated[Path, typer.Option("--out", "-o", help="Export folder (artifact + nanodet.json + "
                                                           "parity.json).")] = Path("export"),
    checkpoint: Checkpoint = None, model: ModelName = None, config: Config = None,
    input_size: InputSize = None, keep_ratio: KeepRatio = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 weights and compute (FP32 input/output).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Calibrated INT8 (needs --calib).")] = False,
    weight_int8: Annotated[bool, typer.Option(
        "--weight-int8", help="MNN: INT8 weights only (smaller file; activations stay float, not an INT8 model).")] = False,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Folder of calibration images.")] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", min=1, help="Use at most this many.")] = 100,
    calib_method: Annotated[Optional[str], typer.Option(
        "--calib-method", help="INT8 calibration method; default per target, chosen by measured mAP (README): "
                               f"{_int8_help('methods')}.")] = None,
    keep_float: Annotated[Optional[str], typer.Option(
        "--keep-float", help="INT8: parts kept in float, comma-separated; 'none' for none; 'auto': the fewest "
                             "convolutions that meet a fidelity target on the calibration images. Default per target, "
                             f"chosen by measured mAP: {_int8_help('parts')}.")] = None,
    opset: Annotated[Optional[int], typer.Option("--opset", min=11, help="ONNX opset (default 11).")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Batch axis left dynamic.")] = False,
    u8_input: Annotated[bool, typer.Option(
        "--u8-input", help="OpenVINO: the model takes the resized 8-bit BGR image and normalises it itself "
                           "(PrePostProcessor); saves the float tensor on the Python side.")] = False,
    verify_images: Annotated[Optional[Path], typer.Option(
        "--verify-images", help="Images for the parity gate; without them only tensor errors on synthetic "
                                "inputs are checked.")] = None,
    verify_ann: Annotated[Optional[Path], typer.Option(
        "--verify-ann", help="COCO annotations of --verify-images: mAP against them.")] = None,
    max_score_err: MaxScoreErr = 1e-4, min_agreement: MinAgreement = 0.98, max_map_drop: MaxMapDrop = 0.01,
    threads: Threads = None, infer_precision: InferPrecision = None, unsafe_load: UnsafeLoad = False,
    android: Annotated[Optional[Path], typer.Option(
        "--android", help="ncnn: also put the accepted export into this Android demo project's assets "
                          "(e.g. android_demo).")] = None,
    html_report: HtmlReport = True, arch: Arch = "host", cpu: PhoneCpus = None,
):
    """Export a checkpoint (ONNX Runtime, OpenVINO, MNN or ncnn; FP32, FP16 or INT8), write nanodet.json, and
    gate it against PyTorch.

    An artifact over budget is moved to OUT/rejected/ (with its parity.json) and the command exits 1; a
    previous good export in OUT is left untouched."""
    from .export import export as run_export

    if fp16 + int8 + weight_int8 > 1:
        raise typer.BadParameter("--fp16, --int8 and --weight-int8 exclude each other")
    if android is not None and to != "ncnn":
        raise typer.BadParameter("--android needs --to ncnn (the demo app runs ncnn)")
    if android is not None and not (android / "app" / "build.gradle.kts").is_file():
        raise typer.BadParameter(f"{android}: not the Android demo project (no app/build.gradle.kts)")
    if verify_ann and not verify_images:
        raise typer.BadParameter("--verify-ann needs --verify-images")
    with _progress() as bar:
        result = run_export(checkpoint, to=to, out=out, model=model, config=config,
                            input_size=_parse_size(input_size), keep_ratio=keep_ratio,
                            precision="fp16" if fp16 else "int8" if int8 else "weight-int8" if weight_int8
                            else "fp32", calib=calib,
                            calib_images=calib_images, calib_method=calib_method, opset=opset,
                            keep_float=None if keep_float is None else
                            [p for p in keep_float.split(",") if p and p != "none"],
                            dynamic_batch=dynamic_batch, verify_images=verify_images, verify_ann=verify_ann,
                            budgets=_budgets(max_score_err, min_agreement, max_map_drop), threads=threads,
                            infer_precision=infer_precision, unsafe_load=unsafe_load, u8_input=u8_input,
                            progress=_progress_factory(bar), html_report=html_report,
                            phone_cpus=_phone_cpus(arch, cpu))
    console.print(f"{result.manifest.model} → {to} {result.manifest.precision}: {result.summary}, execution "
                  f"{result.report.runtime_precision}", soft_wrap=True)
    console.print(_parity_table([result.report]))
    if result.report.inputs == "synthetic":
        console.print("note: the gate compared tensors on synthetic inputs only; pass --verify-images (and "
                      "--verify-ann) for detection agreement and mAP", soft_wrap=True)
    elif result.report.inputs == "calibration images":
        console.print("note: INT8 was gated on its calibration images; pass --verify-images (and --verify-ann) "
                      "for agreement and mAP on images it was not calibrated on", soft_wrap=True)
    if result.phone:
        console.print(_phone_table(result.phone))
        console.print(f"the app's Fast fp16 switch for this export: {result.manifest.fast_fp16} "
                      f"({result.manifest.fast_fp16_note})", soft_wrap=True)
    if not result.accepted:
        err_console.print(f"rejected: the artifact is over budget; moved to {result.directory}")
        raise typer.Exit(1)
    console.print(f"export: {result.directory}")
    if android is not None:
        _install_android(result.directory, android)


def _install_android(export_dir: Path, app: Path) -> None:
    from .android import install_into_app

    written = install_into_app(export_dir, app)
    console.print(f"android: {', '.join(p.name for p in written)} → {written[0].parent}; build with "
                  f"`./gradlew assembleDebug` in {app}", soft_wrap=True)


@app.command()
@_one_line_errors
def android(
    export_dir: Annotated[Path, typer.Argument(help="An ncnn export folder (nanodet-deploy export --to ncnn).")],
    app_dir: Annotated[Path, typer.Option("--app", help="The Android demo project.")] = Path("android_demo"),
):
    """Put an ncnn export (.param, .bin, nanodet.json) into the Android demo app's assets."""
    _install_android(export_dir, app_dir)


@app.command()
@_one_line_errors
def verify(
    directory: Annotated[Path, typer.Argument(help="An export folder, or a folder of export folders.")],
    images: Annotated[Optional[Path], typer.Option("--images", help="Images to compare on.")] = None,
    ann: Annotated[Optional[Path], typer.Option("--ann", help="COCO annotations of --images.")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(
        "--checkpoint", "-c", help="The reference checkpoint; default: the one the export recorded "
                                   "(its sha256 must match).")] = None,
    max_score_err: MaxScoreErr = 1e-4, min_agreement: MinAgreement = 0.98, max_map_drop: MaxMapDrop = 0.01,
    threads: Threads = None, infer_precision: InferPrecision = None, html_report: HtmlReport = True,
    arch: Arch = "host", cpu: PhoneCpus = None,
):
    """Run the parity gate on exports again. Writes parity.json; an artifact over budget is moved to
    DIR/rejected/ and the command exits 1 (with --infer-precision, a failure of that execution mode exits 1
    and leaves the artifact in place; so does a failure on the emulated phone, --arch arm64)."""
    from .export import verify as run_verify

    if ann and not images:
        raise typer.BadParameter("--ann needs --images")
    with _progress() as bar:
        results = run_verify(directory, images=images, ann=ann, checkpoint=checkpoint,
                             budgets=_budgets(max_score_err, min_agreement, max_map_drop), threads=threads,
                             progress=_progress_factory(bar), infer_precision=infer_precision,
                             html_report=html_report, phone_cpus=_phone_cpus(arch, cpu))
    console.print(_parity_table([r.report for r in results]))
    phone = [p for r in results for p in r.phone]
    if phone:
        console.print(_phone_table(phone))
    rejected = [str(r.moved_to) for r in results if r.moved_to]
    failed = [str(r.folder) for r in results if not r.report.passed]
    if rejected:
        err_console.print(f"rejected (over budget, moved): {', '.join(rejected)}")
    elif failed:
        err_console.print(f"over budget with --infer-precision {infer_precision} (artifacts left in place): "
                          f"{', '.join(failed)}")
    phone_failed = [str(r.folder) for r in results if not r.phone_passed]
    if phone_failed:
        err_console.print(f"over budget on the emulated phone in the app's default mode (left in place): "
                          f"{', '.join(phone_failed)}")
    fast_over = sorted({str(r.folder) for r in results for p in r.phone if not p.required and not p.passed})
    if fast_over:
        err_console.print(f"note: the app's Fast fp16 is over budget for {', '.join(fast_over)}; `export --arch "
                          f"arm64` records that in nanodet.json (fast_fp16: forbidden) and the app keeps it off")
    if failed or phone_failed:
        raise typer.Exit(1)


@app.command()
@_one_line_errors
def bench(
    backend: Annotated[str, typer.Option(
        "--backend", "-b", help=f"{_backend_list()}, comma-separated, or all.")] = "all",
    precision: Annotated[str, typer.Option(
        "--precision", help="Comma-separated: fp32, fp16, int8, bf16 (bf16 = OpenVINO running the FP32 IR in "
                            "bf16; torch runs fp32 only).")] = "fp32,fp16,int8,bf16",
    input_size: Annotated[Optional[str], typer.Option(
        "--input-size", help="Comma-separated W (square) sizes, e.g. 320,416; default the model's.")] = None,
    threads: Annotated[str, typer.Option("--threads", help="Comma-separated thread counts.")] = "2",
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs per configuration.")] = 100,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 10,
    checkpoint: Checkpoint = None, model: ModelName = None, config: Config = None,
    export_dir: Annotated[Optional[Path], typer.Option(
        "--export-dir", help="Where exports are cached (by checkpoint hash + options); default "
                             "$NANODET_DEPLOY_CACHE/bench or ~/.cache/nanodet-deploy/bench.")] = None,
    calib: Annotated[Optional[Path], typer.Option(
        "--calib", help="Calibration images for the INT8 exports (without them INT8 is skipped).")] = None,
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="Images to time on (real content matters for decode+NMS); with --ann also mAP.")] = None,
    ann: Annotated[Optional[Path], typer.Option("--ann", help="COCO instances JSON of --images: mAP.")] = None,
    memory: Annotated[bool, typer.Option("--memory/--no-memory",
                                         help="Peak RSS per configuration (one child process each).")] = True,
    mode: Annotated[str, typer.Option(
        "--mode", help="latency: one image at a time, split into pre / inference / post. throughput: also "
                       "frames per second of --runs frames, sequential and pipelined (streaming.pipelined; "
                       "OpenVINO in throughput mode, one stream per thread).")] = "latency",
    u8_input: Annotated[bool, typer.Option(
        "--u8-input", help="Export the backends that can take the 8-bit image that way (OpenVINO: "
                           "normalisation in the graph).")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON here.")] = None,
    plot_out: Annotated[Optional[Path], typer.Option("--plot", help="Write a latency-vs-mAP plot (PNG).")] = None,
    markdown_out: Annotated[Optional[Path], typer.Option("--markdown", help="Write the table as markdown.")] = None,
    unsafe_load: UnsafeLoad = False, html_report: HtmlReport = True,
):
    """Latency (preprocess / inference / decode+NMS), size, peak memory, GFLOP/s and mAP per backend and
    precision, every configuration timed interleaved with the others in one run.

    Exports what is missing (cached: a second run converts nothing). Ratios are to ONNX Runtime FP32 of the
    same size and threads in the same run, and INT8's inference to the same backend's FP32 ("infer vs own
    fp32"), with one line per backend saying whether INT8 is faster there."""
    from . import bench as bench_lib
    from . import bench_report
    from .files import write_text_atomic

    if checkpoint is None:
        raise typer.BadParameter("--checkpoint is required (a file or a zoo name)")
    if ann and not images:
        raise typer.BadParameter("--ann needs --images")
    if unsafe_load:
        raise typer.BadParameter("bench loads checkpoints safely only; export with --unsafe-load first")
    if mode not in bench_lib.MODES:
        raise typer.BadParameter(f"--mode must be one of {', '.join(bench_lib.MODES)}, got '{mode}'")
    backends = list(bench_lib.BACKENDS) if backend == "all" else [b for b in backend.split(",") if b]
    try:
        sizes = [_parse_size(s) for s in input_size.split(",")] if input_size else None
        thread_counts = [int(t) for t in threads.split(",") if t]
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    with _progress() as bar:
        results = bench_lib.run(checkpoint, model=model, config=config, backends=backends,
                                precisions=[p for p in precision.split(",") if p], sizes=sizes,
                                threads=thread_counts, runs=runs, warmup=warmup, export_root=export_dir,
                                calib=calib, images=images, ann=ann, memory=memory,
                                progress=_progress_factory(bar), log=lambda m: err_console.print(m, markup=False),
                                mode=mode, u8_input=u8_input)
    rows = bench_report.rows(results)
    machine = bench_lib.machine()
    console.print(f"nanodet-deploy bench · {bench_lib.machine_line(machine)}", soft_wrap=True, markup=False)
    console.print(f"median of {runs} runs, interleaved; ratio to {' '.join(bench_lib.BASELINE)} of the same size "
                  "and threads", soft_wrap=True)
    console.print(bench_report.format_table(rows, bench_report.columns_of(rows)), markup=False, highlight=False,
                  soft_wrap=True)
    for row in rows:
        if row["note"]:
            console.print(f"{row['backend']} {row['precision']} {row['size']}: {row['note']}", soft_wrap=True)
    for line in bench_report.int8_summary(rows, bench_lib.int8_hardware_note(machine)):
        console.print(line, soft_wrap=True, markup=False)
    if json_out:
        write_text_atomic(json_out, json.dumps({"machine": machine, "machine_line": bench_lib.machine_line(machine),
                                                "runs": runs, "warmup": warmup, "mode": mode,
                                                "u8_input": u8_input,
                                                "checkpoint": str(checkpoint),
                                                "results": [r.to_dict() for r in results], "rows": rows}, indent=1))
    if json_out and html_report:
        from .report import bench_report as write_bench_report

        console.print(f"report: {write_bench_report(json_out)}", soft_wrap=True, markup=False)
    if markdown_out:
        write_text_atomic(markdown_out, f"{bench_lib.machine_line(machine)}\n\n" + bench_report.markdown_table(rows)
                          + "\n")
    if plot_out:
        bench_report.plot(rows, plot_out, title=f"nanodet-deploy bench · {machine['cpu']} · "
                          + " ".join(machine["isa"]))


@app.command()
@_one_line_errors
def report(
    result: Annotated[Path, typer.Argument(help="An export folder (its parity.json), a parity.json, or the JSON "
                                                "of `bench --json`.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Where to write the page; default report.html beside parity.json, or the bench "
                            "JSON's name with .html.")] = None,
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="The folder of the images the gate ran on: the image strip shows pictures only from "
                         "here (a JSON file is not trusted to name files to read).")] = None,
):
    """Rebuild the HTML report of an export, verify or bench run from the JSON it wrote."""
    from .report import build

    console.print(f"report: {build(result, out, images)}", soft_wrap=True, markup=False)


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
    from . import interrupts

    interrupts.install()
    try:
        app()  # click reports Ctrl-C (and so SIGTERM) as "Aborted!" after every cleanup ran
    except SystemExit as exit_:
        raise SystemExit(interrupts.exit_code(exit_.code)) from None
