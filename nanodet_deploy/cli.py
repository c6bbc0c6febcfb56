"""``nanodet-deploy``: a thin typer layer over the Python API. It parses options, calls the API, prints rich
tables, and turns NanodetDeployError into one line on stderr and an exit code (2 usage/input, 1 failure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import cli_options as opt
from .cli_options import budgets, detector_from_options, parse_size, phone_cpus
from .cli_output import (STATE, console, err_console, error_line, one_line_errors, parity_table, phone_table, progress,
                         progress_factory)
from .errors import UsageError
from .images import printable
from .targets import APP_BACKEND, get_target

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Take NanoDet-Plus from PyTorch to ONNX Runtime, OpenVINO, MNN and ncnn — and check "
                       "every artifact against PyTorch.")


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks on errors.")] = False):
    STATE["debug"] = debug


@app.command()
@one_line_errors
def infer(
    images: opt.InferImages, export: opt.ExportDir = None, checkpoint: opt.Checkpoint = None,
    model: opt.ModelName = None, config: opt.Config = None, input_size: opt.InputSize = None,
    keep_ratio: opt.KeepRatio = None, backend: opt.Backend = "torch", threads: opt.Threads = None,
    score_thr: opt.ScoreThr = 0.05, unsafe_load: opt.UnsafeLoad = False, infer_precision: opt.InferPrecision = None,
    json_out: opt.InferJsonOut = None, save_vis: opt.InferSaveVis = None, max_frames: opt.InferMaxFrames = None,
    pipeline: opt.InferPipeline = True, streams: opt.InferStreams = None,
):
    """Detect objects in images, videos or camera frames; optionally write the JSON contract (see README) and
    drawn images. Videos and cameras write one JSON line per frame (--json) and an .mp4 with boxes (--save-vis);
    a run that lost frames or was stopped publishes them as NAME.partial.EXT, the JSON lines ending with a record
    of what is missing.

    Exit code 1 if any image could not be read or a video lost frames (each is reported on one line), 2 for
    usage errors, 130 / 143 after Ctrl-C / SIGTERM (Ctrl-C is an endless camera's normal end: 0)."""
    from .cli_output import detections_table
    from .image_batch import detect_images
    from .images import collect_images
    from .streaming import check_sources, is_video_source

    videos = [source for source in images if is_video_source(source)]
    if videos and len(videos) != len(images):
        raise UsageError("give images or videos/cameras, not both in one run")
    check_sources(videos)
    paths = [] if videos else collect_images(images)
    detector = detector_from_options(export, backend, checkpoint, model, config, input_size, keep_ratio, threads,
                         score_thr, unsafe_load, infer_precision, streams)
    if videos:
        _infer_videos(detector, videos, json_out, save_vis, max_frames, pipeline)
        return
    with progress() as bar:
        run = detect_images(detector, paths, json_out, save_vis, progress_factory(bar)("detecting", len(paths)),
                            on_error=lambda e: error_line(e))
    runtime = detector.runtime
    console.print(detections_table(f"{detector.name} · {runtime.backend} {runtime.precision} · "
                                   f"{len(run.entries)} images", run.entries))
    console.print(f"{len(run.entries)} images in {run.seconds:.1f} s"
                  + (f", JSON: {json_out}" if json_out else "") + (f", images: {save_vis}" if save_vis else ""))
    if run.failed:
        err_console.print(f"{run.failed} of {len(paths)} images failed")
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
            error_line(f"{result.source}: {result.problem()}")

    with progress() as bar:
        run = detect_videos(detector, sources, json_out, save_vis, max_frames, pipeline, progress_factory(bar),
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
@one_line_errors
def eval_command(
    images: opt.EvalImages, ann: opt.EvalAnn, export: opt.ExportDir = None, checkpoint: opt.Checkpoint = None,
    model: opt.ModelName = None, config: opt.Config = None, input_size: opt.InputSize = None,
    keep_ratio: opt.KeepRatio = None, backend: opt.Backend = "torch", threads: opt.Threads = None,
    score_thr: opt.ScoreThr = 0.05, unsafe_load: opt.UnsafeLoad = False, infer_precision: opt.InferPrecision = None,
    json_out: opt.EvalJsonOut = None,
):
    """COCO bbox mAP on annotated images (class i <-> i-th category id in ascending order)."""
    from .cli_output import metrics_table
    from .evaluate import CocoSet, evaluate
    from .files import write_text_atomic

    coco_set = CocoSet.load(images, ann)
    detector = detector_from_options(export, backend, checkpoint, model, config, input_size, keep_ratio, threads,
                         score_thr, unsafe_load, infer_precision)
    with progress() as bar:
        task = bar.add_task("evaluating", total=len(coco_set.images))
        metrics = evaluate(detector, coco_set, len(detector.class_names), progress=lambda: bar.advance(task))
    runtime = detector.runtime
    console.print(metrics_table(f"{detector.name} · {runtime.backend} {runtime.precision} · "
                                f"{len(coco_set.images)} images of {ann.name}", metrics))
    if json_out:
        write_text_atomic(json_out, json.dumps({
            "model": detector.name, "backend": detector.runtime.backend,
            "precision": detector.runtime.precision, "images": str(images), "ann": str(ann),
            "num_images": len(coco_set.images), "checkpoint_sha256": detector.checkpoint_sha256, **metrics},
            indent=1))


@app.command()
@one_line_errors
def export(
    to: opt.ExportTo = "onnxruntime", out: opt.ExportOut = Path("export"), checkpoint: opt.Checkpoint = None,
    model: opt.ModelName = None, config: opt.Config = None, input_size: opt.InputSize = None,
    keep_ratio: opt.KeepRatio = None, fp16: opt.ExportFp16 = False, int8: opt.ExportInt8 = False,
    weight_int8: opt.ExportWeightInt8 = False, calib: opt.ExportCalib = None,
    calib_images: opt.ExportCalibImages = 100, calib_method: opt.ExportCalibMethod = None,
    keep_float: opt.ExportKeepFloat = None, opset: opt.ExportOpset = None,
    dynamic_batch: opt.ExportDynamicBatch = False, u8_input: opt.ExportU8Input = False,
    verify_images: opt.ExportVerifyImages = None, verify_ann: opt.ExportVerifyAnn = None,
    max_score_err: opt.MaxScoreErr = 1e-4, min_agreement: opt.MinAgreement = 0.98,
    max_map_drop: opt.MaxMapDrop = 1.0, threads: opt.Threads = None, infer_precision: opt.InferPrecision = None,
    unsafe_load: opt.UnsafeLoad = False, android: opt.ExportAndroid = None, html_report: opt.HtmlReport = True,
    arch: opt.Arch = "host", cpu: opt.PhoneCpus = None,
):
    """Export a checkpoint (ONNX Runtime, OpenVINO, MNN or ncnn; FP32, FP16 or INT8), write nanodet.json, and
    gate it against PyTorch.

    An artifact over budget is moved to OUT/rejected/ (with its parity.json) and the command exits 1; a
    previous good export in OUT is left untouched. An INT8 export prints a warning when `bench` (its default
    export folder) measured that backend's INT8 slower than its FP32 on this machine."""
    from .export import export as run_export

    if fp16 + int8 + weight_int8 > 1:
        raise typer.BadParameter("--fp16, --int8 and --weight-int8 exclude each other")
    if android is not None and get_target(to).name != APP_BACKEND:
        raise typer.BadParameter("--android needs --to ncnn (the demo app runs ncnn)")
    if android is not None and not (android / "app" / "build.gradle.kts").is_file():
        raise typer.BadParameter(f"{android}: not the Android demo project (no app/build.gradle.kts)")
    if verify_ann and not verify_images:
        raise typer.BadParameter("--verify-ann needs --verify-images")
    with progress() as bar:
        result = run_export(checkpoint, to=to, out=out, model=model, config=config,
                            input_size=parse_size(input_size), keep_ratio=keep_ratio,
                            precision="fp16" if fp16 else "int8" if int8 else "weight-int8" if weight_int8
                            else "fp32", calib=calib,
                            calib_images=calib_images, calib_method=calib_method, opset=opset,
                            keep_float=None if keep_float is None else
                            [p for p in keep_float.split(",") if p and p != "none"],
                            dynamic_batch=dynamic_batch, verify_images=verify_images, verify_ann=verify_ann,
                            budgets=budgets(max_score_err, min_agreement, max_map_drop), threads=threads,
                            infer_precision=infer_precision, unsafe_load=unsafe_load, u8_input=u8_input,
                            progress=progress_factory(bar), html_report=html_report,
                            phone_cpus=phone_cpus(arch, cpu))
    console.print(f"{result.manifest.model} → {to} {result.manifest.precision}: {result.summary}, execution "
                  f"{result.report.runtime_precision}", soft_wrap=True)
    console.print(parity_table([result.report]))
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", soft_wrap=True, markup=False, highlight=False)
    if result.report.inputs == "synthetic":
        console.print("note: the gate compared tensors on synthetic inputs only; pass --verify-images (and "
                      "--verify-ann) for detection agreement and mAP", soft_wrap=True)
    elif result.report.inputs == "calibration images":
        console.print("note: INT8 was gated on its calibration images; pass --verify-images (and --verify-ann) "
                      "for agreement and mAP on images it was not calibrated on", soft_wrap=True)
    if result.phone:
        console.print(phone_table(result.phone))
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
@one_line_errors
def android(
    export_dir: opt.AndroidExportDir, app_dir: opt.AndroidAppDir = Path("android_demo"),
):
    """Put an ncnn export (.param, .bin, nanodet.json) into the Android demo app's assets."""
    _install_android(export_dir, app_dir)


@app.command()
@one_line_errors
def verify(
    directory: opt.VerifyDirectory, images: opt.VerifyImages = None, ann: opt.VerifyAnn = None,
    checkpoint: opt.VerifyCheckpoint = None, max_score_err: opt.MaxScoreErr = 1e-4,
    min_agreement: opt.MinAgreement = 0.98, max_map_drop: opt.MaxMapDrop = 1.0, threads: opt.Threads = None,
    infer_precision: opt.InferPrecision = None, html_report: opt.HtmlReport = True, arch: opt.Arch = "host",
    cpu: opt.PhoneCpus = None,
):
    """Run the parity gate on exports again. Writes parity.json; an artifact over budget is moved to
    DIR/rejected/ and the command exits 1 (with --infer-precision, a failure of that execution mode exits 1
    and leaves the artifact in place; so does a failure on the emulated phone, --arch arm64)."""
    from .export import verify as run_verify
    from .export import verify_outcome

    if ann and not images:
        raise typer.BadParameter("--ann needs --images")
    with progress() as bar:
        results = run_verify(directory, images=images, ann=ann, checkpoint=checkpoint,
                             budgets=budgets(max_score_err, min_agreement, max_map_drop), threads=threads,
                             progress=progress_factory(bar), infer_precision=infer_precision,
                             html_report=html_report, phone_cpus=phone_cpus(arch, cpu))
    console.print(parity_table([r.report for r in results]))
    phone = [p for r in results for p in r.phone]
    if phone:
        console.print(phone_table(phone))
    lines, failed = verify_outcome(results, infer_precision)
    for line in lines:
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command()
@one_line_errors
def bench(
    backend: opt.BenchBackend = "all", precision: opt.BenchPrecision = "fp32,fp16,int8,bf16",
    input_size: opt.BenchInputSize = None,
    threads: opt.BenchThreads = "2", runs: opt.BenchRuns = 100, warmup: opt.BenchWarmup = 10,
    checkpoint: opt.Checkpoint = None, model: opt.ModelName = None, config: opt.Config = None,
    export_dir: opt.BenchExportDir = None, calib: opt.BenchCalib = None, images: opt.BenchImages = None,
    ann: opt.BenchAnn = None, memory: opt.BenchMemory = True, mode: opt.BenchMode = "latency",
    u8_input: opt.BenchU8Input = False, json_out: opt.BenchJsonOut = None, plot_out: opt.BenchPlotOut = None,
    markdown_out: opt.BenchMarkdownOut = None, unsafe_load: opt.UnsafeLoad = False,
    html_report: opt.HtmlReport = True,
):
    """Latency (preprocess / inference / decode+NMS), size, peak memory, GFLOP/s and mAP per backend and
    precision, every configuration timed interleaved with the others in one run.

    Exports what is missing (cached: a second run converts nothing). Ratios are to ONNX Runtime FP32 of the
    same size and threads in the same run, and INT8's inference to the same backend's FP32 ("infer vs own
    fp32"), with one line per backend saying whether INT8 is faster there."""
    from . import bench as bench_lib
    from . import bench_results
    from .files import write_text_atomic
    from .machine import machine, machine_line

    if checkpoint is None:
        raise typer.BadParameter("--checkpoint is required (a file or a zoo name)")
    if ann and not images:
        raise typer.BadParameter("--ann needs --images")
    if unsafe_load:
        raise typer.BadParameter("bench loads checkpoints safely only; export with --unsafe-load first")
    try:
        sizes = [parse_size(s) for s in input_size.split(",")] if input_size else None
        thread_counts = [int(t) for t in threads.split(",") if t]
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    with progress() as bar:
        results = bench_lib.run(checkpoint, model=model, config=config,
                                backends=None if backend == "all" else [b for b in backend.split(",") if b],
                                precisions=[p for p in precision.split(",") if p], sizes=sizes,
                                threads=thread_counts, runs=runs, warmup=warmup, export_root=export_dir,
                                calib=calib, images=images, ann=ann, memory=memory,
                                progress=progress_factory(bar), log=lambda m: err_console.print(m, markup=False),
                                mode=mode, u8_input=u8_input)
    info = machine()
    document = bench_results.document(results, info, runs, warmup, mode, u8_input, checkpoint)
    rows = document["rows"]
    for line in bench_results.summary_lines(document):
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    if json_out:
        write_text_atomic(json_out, json.dumps(document, indent=1))
        if html_report:
            from .report import bench_page

            console.print(f"report: {bench_page(json_out)}", soft_wrap=True, markup=False)
    if markdown_out:
        write_text_atomic(markdown_out, f"{machine_line(info)}\n\n{bench_results.markdown_table(rows)}\n")
    if plot_out:
        bench_results.plot(rows, plot_out, title=f"nanodet-deploy bench · {info['cpu']} · " + " ".join(info["isa"]))


@app.command()
@one_line_errors
def report(
    result: opt.ReportResult, out: opt.ReportOut = None, images: opt.ReportImages = None,
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
