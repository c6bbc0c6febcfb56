"""ONNX Runtime FP32 / FP16 / INT8 latency at one input size, measured in ONE run, interleaved.

    python benchmarks/onnxruntime_latency.py [--size 416] [--threads 2] [--runs 200] [--work DIR]

Exports the three precisions of the shared nanodet-plus-m weights (INT8 calibrated on calib-train) unless
they are already in --work, then times ``runtime.run`` on real val-dev input tensors. The three models take
turns image by image, so a noisy machine slows all of them alike; ratios are to FP32 of the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from nanodet_deploy.converters.calibration import calibration_images, calibration_tensors
from nanodet_deploy.export import export
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.runtimes.onnxruntime import OnnxRuntime

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=416, choices=(320, 416))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    weights = SHARED / f"weights/nanodet-plus-m_{args.size}.pth"
    runtimes = {}
    for precision in ("fp32", "fp16", "int8"):
        folder = args.work / f"onnx-m{args.size}-{precision}"
        if not (folder / "nanodet.json").is_file():
            export(weights, to="onnx", out=folder, precision=precision, threads=args.threads,
                   calib=SHARED / "coco/calib-train/images" if precision == "int8" else None)
        manifest = read_manifest(folder)
        runtimes[precision] = (OnnxRuntime.from_export(folder, manifest, threads=args.threads),
                               (folder / manifest.files["model"]).stat().st_size)
    processing = read_manifest(args.work / f"onnx-m{args.size}-fp32").processing_config()
    tensors = list(calibration_tensors(calibration_images(SHARED / "coco/val-dev/images", 20), processing))
    times = {p: [] for p in runtimes}
    for i in range(args.warmup + args.runs):
        for precision, (runtime, _) in runtimes.items():
            start = time.perf_counter()
            runtime.run(tensors[i % len(tensors)])
            if i >= args.warmup:
                times[precision].append((time.perf_counter() - start) * 1e3)
    base = np.median(times["fp32"])
    report = {"cpu": platform.processor() or platform.machine(), "size": args.size, "threads": args.threads,
              "runs": args.runs, "results": {}}
    print(f"ONNX Runtime, {args.size}x{args.size}, {args.threads} threads, {args.runs} runs each, interleaved")
    print(f"{'precision':<10}{'median ms':>10}{'p90 ms':>9}{'min ms':>9}{'vs fp32':>9}{'size MB':>9}")
    for precision, values in times.items():
        median = float(np.median(values))
        size = runtimes[precision][1] / 1e6
        report["results"][precision] = {"median_ms": median, "p90_ms": float(np.percentile(values, 90)),
                                        "min_ms": float(np.min(values)), "ratio_to_fp32": median / base,
                                        "size_mb": size}
        print(f"{precision:<10}{median:>10.2f}{np.percentile(values, 90):>9.2f}{np.min(values):>9.2f}"
              f"{median / base:>9.2f}{size:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
