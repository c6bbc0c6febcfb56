"""Shared by the benchmark scripts: the shared data, and exports made once into a work folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nanodet_deploy.converters.calibration import calibration_images
from nanodet_deploy.manifest import read_manifest

SHARED = Path(__file__).resolve().parents[2] / "shared"
CALIB = SHARED / "coco/calib-train/images"
VAL_IMAGES = SHARED / "coco/val-dev/images"


def ensure_export(work: Path, target: str, size: int, precision: str, threads: int) -> Path:
    """The export of the shared weights to ``target`` in ``precision`` ("weight-int8": MNN's weight-only INT8),
    through bench's export cache in ``work`` (made once, keyed by checkpoint hash and options)."""
    from nanodet_deploy.bench_cells import Cell, cached_export
    from nanodet_deploy.model import load
    from nanodet_deploy.targets import get_target

    checkpoint = SHARED / f"weights/nanodet-plus-m_{size}.pth"
    cell = Cell(get_target(target).name, precision, (size, size), threads)
    folder, accepted = cached_export(work, load(checkpoint), checkpoint, cell, CALIB if precision == "int8" else None)
    if not accepted:  # benchmark it all the same, and say so
        print(f"note: {folder.parent.name} is over the parity budget; timing the rejected artifact")
    return folder


def released_ncnn(name: str, precision: str, threads: int):
    """(runtime, size in MB) of ``../shared/reference/ncnn-release/<name>.param/.bin``."""
    from nanodet_deploy.runtimes.ncnn import NcnnRuntime

    param, weights = SHARED / f"reference/ncnn-release/{name}.param", SHARED / f"reference/ncnn-release/{name}.bin"
    return NcnnRuntime(param, weights, precision, threads), (param.stat().st_size + weights.stat().st_size) / 1e6


def val_images(count: int = 20):
    """Real val-dev images (BGR), spread over the set."""
    from nanodet_deploy.images import read_image

    return [read_image(path) for path in calibration_images(VAL_IMAGES, count)]


def profile_parser(description: str):
    """The options of the per-op profiles (mnn_ops.py, openvino_ops.py): --size, --threads, --runs, --work."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=416, choices=(320, 416))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "work")
    return parser


def profile_fp32_and_int8(target: str, make_profile, size: int, threads: int, runs: int, work: Path) -> dict:
    """{"fp32": profile, "int8": profile}: ``make_profile(export folder, threads)`` for the FP32 and INT8 exports
    of ``target``, each warmed up on 3 val-dev tensors, then run ``runs`` times by turns (a profile has ``run(tensor)``
    and ``reset()``)."""
    from nanodet_deploy.processing import preprocess

    profiles, processing = {}, None
    for precision in ("fp32", "int8"):
        folder = ensure_export(work, target, size, precision, threads)
        processing = read_manifest(folder).processing_config()
        profiles[precision] = make_profile(folder, threads)
    tensors = [preprocess(image, processing)[0] for image in val_images()]
    for profile in profiles.values():  # warm-up
        for tensor in tensors[:3]:
            profile.run(tensor)
        profile.reset()
    for i in range(runs):
        for profile in profiles.values():
            profile.run(tensors[i % len(tensors)])
    return profiles


def run_configs(configs, sizes, threads: int, runs: int, work: Path, baseline: str) -> dict:
    """Time every (name, target, precision, runtime options) config interleaved, one run per size; print a
    table with ratios to ``baseline`` and return the rows by size."""
    from statistics import median

    from nanodet_deploy.bench_cells import artifact_size
    from nanodet_deploy.timing import interleaved_stages
    from nanodet_deploy.bench_results import format_table
    from nanodet_deploy.runtimes import open_export

    report, images = {}, val_images()
    for size in sizes:
        runners, sizes_mb = {}, {}
        for name, target, precision, options in configs:
            if target == "ncnn-release":  # a released ncnn model we did not make: options["model"] names it
                runtime, sizes_mb[name] = released_ncnn(options["model"].format(size=size), precision, threads)
                runners[name] = (runtime, runners[baseline][1])  # same network input as ours
                continue
            folder = ensure_export(work, target, size, precision, threads)
            manifest = read_manifest(folder)
            runners[name] = (open_export(folder, manifest, threads=threads, **options), manifest.processing_config())
            sizes_mb[name] = artifact_size(folder, manifest) / 1e6
        # the inference stage: runtime.run on the preprocessed tensor, timed interleaved with the others
        times = {name: stages["inference"] for name, stages in
                 interleaved_stages(runners, images, runs=runs, warmup=20).items()}
        base = median(times[baseline])
        rows = [{"config": name, "ran": runners[name][0].precision, "median_ms": median(t),
                 "p90_ms": float(np.percentile(t, 90)), "min_ms": min(t), "ratio": median(t) / base,
                 "size_mb": sizes_mb[name]} for name, t in times.items()]
        report[size] = rows
        print(f"\n{size}x{size}, {threads} threads, {runs} runs each, interleaved; ratio to {baseline}")
        print(format_table(rows, [("config", "config", "s"), ("ran", "ran", "s"), ("median_ms", "median ms", ".2f"),
                                  ("p90_ms", "p90 ms", ".2f"), ("min_ms", "min ms", ".2f"), ("ratio", "ratio", ".2f"),
                                  ("size_mb", "size MB", ".2f")]))
    return report


def report_layers(keys, ms, layers, width: int, heading: list[str], json_path=None, document=None) -> None:
    """Print the FP32-vs-INT8 per-layer table of the profiles (openvino_ops.py, ncnn_ops.py) — ``keys`` (type,
    kernel) from the most time down, ``ms(precision, key)`` and ``layers(precision, key)`` — under ``heading``,
    and write it with ``document`` into ``json_path`` when given."""
    import json

    keys = sorted(keys, key=lambda k: -(ms("fp32", k) + ms("int8", k)))
    rows = [{"type": k[0], "kernel": k[1], **{f"{p}_{what}": f(p, k) for p in ("fp32", "int8")
                                              for what, f in (("ms", ms), ("layers", layers))}} for k in keys]
    print("\n".join(heading))
    print(f"{'layer type':22s} {'kernel':{width}s} {'FP32 ms':>8s} {'layers':>6s} {'INT8 ms':>8s} {'layers':>6s}")
    for r in rows:
        print(f"{r['type']:22s} {r['kernel']:{width}s} {r['fp32_ms']:8.3f} {r['fp32_layers']:6d} {r['int8_ms']:8.3f} "
              f"{r['int8_layers']:6d}")
    if json_path:
        json_path.write_text(json.dumps({**(document or {}), "layers": rows}, indent=1) + "\n")
