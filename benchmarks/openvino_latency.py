"""OpenVINO FP32 (f32 and bf16 execution), FP16 and INT8 latency at 320 and 416, beside ONNX Runtime FP32,
all measured in ONE run per size, interleaved.

    python benchmarks/openvino_latency.py [--sizes 320,416] [--threads 2] [--runs 200] [--work DIR]

Ratios are to ONNX Runtime FP32 and to OpenVINO FP32-f32 of the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from _exports import ensure_export, val_tensors

from nanodet_deploy.bench import artifact_size, format_table, interleaved_latency
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.runtimes import open_export

# (row name, target, precision, runtime options)
CONFIGS = [
    ("onnxruntime fp32", "onnx", "fp32", {}),
    ("openvino fp32 (f32)", "openvino", "fp32", {"infer_precision": "f32"}),
    ("openvino fp32 (bf16)", "openvino", "fp32", {"infer_precision": "bf16"}),
    ("openvino fp16", "openvino", "fp16", {"infer_precision": "f32"}),
    ("openvino int8", "openvino", "int8", {"infer_precision": "f32"}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="320,416")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "sizes": {}}
    for size in map(int, args.sizes.split(",")):
        runtimes, folders = {}, {}
        for name, target, precision, options in CONFIGS:
            folders[name] = ensure_export(args.work, target, size, precision, args.threads)
            runtimes[name] = open_export(folders[name], read_manifest(folders[name]), threads=args.threads,
                                         **options)
        results = interleaved_latency(runtimes, val_tensors(folders["onnxruntime fp32"]), runs=args.runs,
                                      warmup=20)
        ort, ov = results["onnxruntime fp32"]["median_ms"], results["openvino fp32 (f32)"]["median_ms"]
        rows = [{"config": name, "ran": runtimes[name].precision, **r, "vs_ort": r["median_ms"] / ort,
                 "vs_ov_f32": r["median_ms"] / ov,
                 "size_mb": artifact_size(folders[name], read_manifest(folders[name])) / 1e6}
                for name, r in results.items()]
        report["sizes"][size] = rows
        print(f"\n{size}x{size}, {args.threads} threads, {args.runs} runs each, interleaved")
        print(format_table(rows, [("config", "config", "s"), ("ran", "ran", "s"), ("median_ms", "median ms", ".2f"),
                                  ("p90_ms", "p90 ms", ".2f"), ("min_ms", "min ms", ".2f"),
                                  ("vs_ort", "vs ORT fp32", ".2f"), ("vs_ov_f32", "vs OV f32", ".2f"),
                                  ("size_mb", "size MB", ".2f")]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
