"""The CLI's options shared between commands, and the parsing of the values that typer hands over as text
(sizes, CPU lists, budgets). Parsing only: a bad value is typer.BadParameter (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .converters import int8_help


def parse_size(value: Optional[str]) -> Optional[tuple[int, int]]:
    """``--input-size`` W or W,H (or WxH) -> (W, H)."""
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.replace("x", ",").split(",")]
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not W or W,H") from None
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise typer.BadParameter(f"'{value}' is not W or W,H")
    return (parts[0], parts[-1])


def backend_list() -> str:
    from .targets import BACKENDS

    return ", ".join(BACKENDS)


def target_list() -> str:
    from .targets import TARGETS

    return ", ".join(f"{t.name} ({t.description}" + "".join(f"; also '{a}'" for a in t.aliases) + ")"
                     for t in TARGETS.values())


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
    "--infer-precision", help="OpenVINO: fp32 (default, exact) or bf16 (faster on CPUs with AVX-512 BF16).")]
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


def detector_from_options(export, backend, checkpoint, model, config, input_size, keep_ratio, threads, score_thr,
              unsafe_load, infer_precision=None, streams=None):
    """The Detector the model options describe: an export folder, or a checkpoint run by ``backend``."""
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
                    input_size=parse_size(input_size), keep_ratio=keep_ratio, threads=threads,
                    score_thr=score_thr, unsafe_load=unsafe_load)


def phone_cpus(arch: str, cpu: str | None):
    """The CPU models to emulate (None for --arch host)."""
    from .phone import DEFAULT_CPUS

    if arch not in ("host", "arm64"):
        raise typer.BadParameter(f"--arch must be host or arm64, got '{arch}'")
    if arch != "arm64":
        if cpu is not None:
            raise typer.BadParameter("--cpu needs --arch arm64")
        return None
    return DEFAULT_CPUS if cpu is None else tuple(c for c in cpu.split(",") if c)


MaxScoreErr = Annotated[float, typer.Option("--max-score-err", help="FP32 budget: max-abs error of scores.")]
MinAgreement = Annotated[float, typer.Option("--min-agreement", help="FP16 budget: detection agreement.")]
MaxMapDrop = Annotated[float, typer.Option("--max-map-drop", min=0.0, help="INT8 budget: COCO mAP points lost "
                                                                          "(1.0: 0.3703 -> 0.3603).")]


def budgets(max_score_err, min_agreement, max_map_drop):
    from .parity import Budgets

    return Budgets(fp32_score_max_abs=max_score_err, fp16_agreement=min_agreement, int8_map_drop_points=max_map_drop)


# Each command's own options (the shared ones above)
InferImages = Annotated[list[Path], typer.Argument(help="Image files and/or folders of images; or video files "
    "(.mp4, .avi, ...) and cameras (camera:0).")]
InferJsonOut = Annotated[Optional[Path], typer.Option("--json", help="Write detections as JSON here.")]
InferSaveVis = Annotated[Optional[Path], typer.Option("--save-vis", help="Write images (videos: .mp4) with boxes "
    "here.")]
InferMaxFrames = Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Videos and cameras: stop after "
    "this many frames (a camera runs until Ctrl-C without it).")]
InferPipeline = Annotated[bool, typer.Option("--pipeline/--sequential", help="Videos and cameras: overlap "
    "pre/postprocessing of neighbouring frames with inference.")]
InferStreams = Annotated[Optional[int], typer.Option("--streams", min=1, max=64, help="OpenVINO exports, videos and "
    "cameras: throughput mode, this many frames inferred at once "
    "(the threads split between them; 2 on 2 cores).")]
EvalImages = Annotated[Path, typer.Option("--images", help="Folder of the annotated images.")]
EvalAnn = Annotated[Path, typer.Option("--ann", help="COCO instances JSON.")]
EvalJsonOut = Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here.")]
ExportTo = Annotated[str, typer.Option("--to", help=f"Target: {target_list()}.")]
ExportOut = Annotated[Path, typer.Option("--out", "-o", help="Export folder (artifact + nanodet.json + "
    "parity.json).")]
ExportFp16 = Annotated[bool, typer.Option("--fp16", help="FP16 model, FP32 input/output: weights in float16; the "
    "gate's 'precision (ran)' says whether the runtime also computes in float16 (OpenVINO, LiteRT, MNN: float32 on "
    "x86).")]
ExportInt8 = Annotated[bool, typer.Option("--int8", help="Calibrated INT8 (needs --calib).")]
ExportWeightInt8 = Annotated[bool, typer.Option(
    "--weight-int8", help="MNN: INT8 weights only (smaller file; activations stay float, not an INT8 model).")]
ExportCalib = Annotated[Optional[Path], typer.Option("--calib", help="Folder of calibration images.")]
ExportCalibImages = Annotated[int, typer.Option("--calib-images", min=1, help="Use at most this many.")]
ExportCalibMethod = Annotated[Optional[str], typer.Option(
    "--calib-method", help="INT8 calibration method; default per target, chosen by measured mAP (README): "
    f"{int8_help('methods')}.")]
ExportKeepFloat = Annotated[Optional[str], typer.Option(
    "--keep-float", help="INT8: parts kept in float, comma-separated; 'none' for none; 'auto': the fewest "
    "convolutions that meet a fidelity target on the calibration images. Default per target, "
    f"chosen by measured mAP: {int8_help('parts')}.")]
ExportOpset = Annotated[Optional[int], typer.Option("--opset", min=11, help="ONNX opset (default 11).")]
ExportDynamicBatch = Annotated[bool, typer.Option("--dynamic-batch", help="Batch axis left dynamic.")]
ExportU8Input = Annotated[bool, typer.Option(
    "--u8-input", help="OpenVINO: the model takes the resized 8-bit BGR image and normalises it itself "
    "(PrePostProcessor); saves the float tensor on the Python side.")]
ExportVerifyImages = Annotated[Optional[Path], typer.Option(
    "--verify-images", help="Images for the parity gate; without them only tensor errors on synthetic "
    "inputs are checked.")]
ExportVerifyAnn = Annotated[Optional[Path], typer.Option(
    "--verify-ann", help="COCO annotations of --verify-images: mAP against them.")]
ExportAndroid = Annotated[Optional[Path], typer.Option(
    "--android", help="ncnn: also put the accepted export into this Android demo project's assets "
    "(e.g. android_demo).")]
AndroidExportDir = Annotated[Path, typer.Argument(help="An ncnn export folder (nanodet-deploy export --to ncnn).")]
AndroidAppDir = Annotated[Path, typer.Option("--app", help="The Android demo project.")]
VerifyDirectory = Annotated[Path, typer.Argument(help="An export folder, or a folder of export folders.")]
VerifyImages = Annotated[Optional[Path], typer.Option("--images", help="Images to compare on.")]
VerifyAnn = Annotated[Optional[Path], typer.Option("--ann", help="COCO annotations of --images.")]
VerifyCheckpoint = Annotated[Optional[str], typer.Option(
    "--checkpoint", "-c", help="The reference checkpoint; default: the one the export recorded "
    "(its sha256 must match).")]
BenchBackend = Annotated[str, typer.Option(
    "--backend", "-b", help=f"{backend_list()}, comma-separated, or all.")]
BenchPrecision = Annotated[str, typer.Option(
    "--precision", help="Comma-separated: fp32, fp16, int8, bf16 (bf16 = OpenVINO running the FP32 IR in "
    "bf16; torch runs fp32 only).")]
BenchInputSize = Annotated[Optional[str], typer.Option(
    "--input-size", help="Comma-separated W (square) sizes, e.g. 320,416; default the model's.")]
BenchThreads = Annotated[str, typer.Option("--threads", help="Comma-separated thread counts.")]
BenchRuns = Annotated[int, typer.Option("--runs", min=1, help="Timed runs per configuration.")]
BenchWarmup = Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")]
BenchExportDir = Annotated[Optional[Path], typer.Option(
    "--export-dir", help="Where exports are cached (by checkpoint hash + options); default "
    "$NANODET_DEPLOY_CACHE/bench or ~/.cache/nanodet-deploy/bench.")]
BenchCalib = Annotated[Optional[Path], typer.Option(
    "--calib", help="Calibration images for the INT8 exports (without them INT8 is skipped).")]
BenchImages = Annotated[Optional[Path], typer.Option(
    "--images", help="Images to time on (real content matters for decode+NMS); with --ann also mAP.")]
BenchAnn = Annotated[Optional[Path], typer.Option("--ann", help="COCO instances JSON of --images: mAP.")]
BenchMemory = Annotated[bool, typer.Option("--memory/--no-memory",
    help="Peak RSS per configuration (one child process each).")]
BenchMode = Annotated[str, typer.Option(
    "--mode", help="latency: one image at a time, split into pre / inference / post. throughput: also "
    "frames per second of --runs frames, sequential and pipelined (streaming.pipelined; "
    "OpenVINO in throughput mode, one stream per thread).")]
BenchU8Input = Annotated[bool, typer.Option(
    "--u8-input", help="Export the backends that can take the 8-bit image that way (OpenVINO: "
    "normalisation in the graph).")]
BenchJsonOut = Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON here.")]
BenchPlotOut = Annotated[Optional[Path], typer.Option("--plot", help="Write a latency-vs-mAP plot (PNG).")]
BenchMarkdownOut = Annotated[Optional[Path], typer.Option("--markdown", help="Write the table as markdown.")]
ReportResult = Annotated[Path, typer.Argument(help="An export folder (its parity.json), a parity.json, or the JSON "
    "of `bench --json`.")]
ReportOut = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Where to write the page; default report.html beside parity.json, or the bench "
    "JSON's name with .html.")]
ReportImages = Annotated[Optional[Path], typer.Option(
    "--images", help="The folder of the images the gate ran on: the image strip shows pictures only from "
    "here (a JSON file is not trusted to name files to read).")]
