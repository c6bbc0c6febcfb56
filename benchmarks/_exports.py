"""Shared by the benchmark scripts: the shared data, and exports made once into a work folder."""

from __future__ import annotations

from pathlib import Path

from nanodet_deploy.converters.calibration import calibration_images, calibration_tensors
from nanodet_deploy.export import export
from nanodet_deploy.manifest import read_manifest

SHARED = Path(__file__).resolve().parents[2] / "shared"
CALIB = SHARED / "coco/calib-train/images"
VAL_IMAGES = SHARED / "coco/val-dev/images"


def ensure_export(work: Path, target: str, size: int, precision: str, threads: int) -> Path:
    """``work/<target>-m<size>-<precision>``, exported from the shared weights unless already there.
    ``precision`` "weight-int8" is MNN's weight-only INT8."""
    folder = work / f"{target}-m{size}-{precision}"
    if not (folder / "nanodet.json").is_file():
        weight_int8 = precision == "weight-int8"
        result = export(SHARED / f"weights/nanodet-plus-m_{size}.pth", to=target, out=folder,
                        precision="fp32" if weight_int8 else precision, weight_int8=weight_int8, threads=threads,
                        calib=CALIB if precision == "int8" else None)
        if not result.accepted:  # benchmark it all the same, and say so
            print(f"note: {folder.name} is over the parity budget; timing the rejected artifact")
            return result.directory
    return folder


def released_ncnn(name: str, precision: str, threads: int):
    """(runtime, size in MB) of ``../shared/reference/ncnn-release/<name>.param/.bin``."""
    from nanodet_deploy.runtimes.ncnn import NcnnRuntime

    param, weights = SHARED / f"reference/ncnn-release/{name}.param", SHARED / f"reference/ncnn-release/{name}.bin"
    return NcnnRuntime(param, weights, precision, threads), (param.stat().st_size + weights.stat().st_size) / 1e6


def val_tensors(folder: Path, count: int = 20):
    """Real val-dev input tensors, preprocessed for the export in ``folder``."""
    processing = read_manifest(folder).processing_config()
    return list(calibration_tensors(calibration_images(VAL_IMAGES, count), processing))


def run_configs(configs, sizes, threads: int, runs: int, work: Path, baseline: str) -> dict:
    """Time every (name, target, precision, runtime options) config interleaved, one run per size; print a
    table with ratios to ``baseline`` and return the rows by size."""
    from nanodet_deploy.bench import artifact_size, format_table, interleaved_latency
    from nanodet_deploy.runtimes import open_export

    report = {}
    for size in sizes:
        runtimes, folders = {}, {}
        sizes_mb = {}
        for name, target, precision, options in configs:
            if target == "ncnn-release":  # a released ncnn model we did not make: options["model"] names it
                runtimes[name], sizes_mb[name] = released_ncnn(options["model"].format(size=size), precision, threads)
                continue
            folders[name] = ensure_export(work, target, size, precision, threads)
            runtimes[name] = open_export(folders[name], read_manifest(folders[name]), threads=threads, **options)
            sizes_mb[name] = artifact_size(folders[name], read_manifest(folders[name])) / 1e6
        results = interleaved_latency(runtimes, val_tensors(folders[baseline]), runs=runs, warmup=20)
        base = results[baseline]["median_ms"]
        rows = [{"config": name, "ran": runtimes[name].precision, **r, "ratio": r["median_ms"] / base,
                 "size_mb": sizes_mb[name]} for name, r in results.items()]
        report[size] = rows
        print(f"\n{size}x{size}, {threads} threads, {runs} runs each, interleaved; ratio to {baseline}")
        print(format_table(rows, [("config", "config", "s"), ("ran", "ran", "s"), ("median_ms", "median ms", ".2f"),
                                  ("p90_ms", "p90 ms", ".2f"), ("min_ms", "min ms", ".2f"), ("ratio", "ratio", ".2f"),
                                  ("size_mb", "size MB", ".2f")]))
    return report
