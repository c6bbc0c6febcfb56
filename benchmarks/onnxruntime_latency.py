"""ONNX Runtime FP32 / FP16 / INT8 latency at one input size, measured in ONE run, interleaved.

    python benchmarks/onnxruntime_latency.py [--size 416] [--threads 2] [--runs 200] [--work DIR]

Exports the three precisions of the shared nanodet-plus-m weights (INT8 calibrated on calib-train) unless
they are already in --work, then times ``runtime.run`` on real val-dev input tensors, the three models taking
turns input by input; ratios are to FP32 of the same run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _exports import ensure_export, val_tensors

from nanodet_deploy.bench import artifact_size, format_table, interleaved_latency
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.runtimes import open_export


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=416, choices=(320, 416))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/work"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folders = {p: ensure_export(args.work, "onnx", args.size, p, args.threads) for p in ("fp32", "fp16", "int8")}
    runtimes = {p: open_export(f, read_manifest(f), threads=args.threads) for p, f in folders.items()}
    results = interleaved_latency(runtimes, val_tensors(folders["fp32"]), runs=args.runs, warmup=20)
    rows = [{"precision": p, **r, "vs_fp32": r["median_ms"] / results["fp32"]["median_ms"],
             "size_mb": artifact_size(folders[p], read_manifest(folders[p])) / 1e6} for p, r in results.items()]
    print(f"ONNX Runtime, {args.size}x{args.size}, {args.threads} threads, {args.runs} runs each, interleaved")
    print(format_table(rows, [("precision", "precision", "s"), ("median_ms", "median ms", ".2f"),
                              ("p90_ms", "p90 ms", ".2f"), ("min_ms", "min ms", ".2f"),
                              ("vs_fp32", "vs fp32", ".2f"), ("size_mb", "size MB", ".2f")]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
