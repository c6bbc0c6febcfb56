"""Latency of exported artifacts per backend and precision, beside ONNX Runtime FP32, measured in ONE run per
input size with the configurations taking turns input by input (this machine class is shared and noisy).

    python benchmarks/latency.py --suite onnxruntime|openvino|mnn|ncnn [--sizes 320,416] [--threads 2]
                                 [--runs 200] [--work DIR] [--json OUT]

Exports the shared nanodet-plus-m weights into --work once (INT8 calibrated on calib-train), then times
``runtime.run`` on real val-dev input tensors. Ratios are to ONNX Runtime FP32 of the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from _exports import run_configs

# suite -> [(row name, target, precision, runtime options)]
SUITES = {
    "onnxruntime": [
        ("onnxruntime fp32", "onnx", "fp32", {}),
        ("onnxruntime fp16", "onnx", "fp16", {}),
        ("onnxruntime int8", "onnx", "int8", {}),
    ],
    "openvino": [
        ("onnxruntime fp32", "onnx", "fp32", {}),
        ("openvino fp32 (f32)", "openvino", "fp32", {"infer_precision": "fp32"}),
        ("openvino fp32 (bf16)", "openvino", "fp32", {"infer_precision": "bf16"}),
        ("openvino fp16", "openvino", "fp16", {"infer_precision": "fp32"}),
        ("openvino int8", "openvino", "int8", {"infer_precision": "fp32"}),
    ],
    "mnn": [
        ("onnxruntime fp32", "onnx", "fp32", {}),
        ("mnn fp32", "mnn", "fp32", {}),
        ("mnn fp16", "mnn", "fp16", {}),
        ("mnn weight-int8", "mnn", "weight-int8", {}),
        ("mnn int8", "mnn", "int8", {}),
    ],
    "ncnn": [
        ("onnxruntime fp32", "onnx", "fp32", {}),
        ("ncnn fp32", "ncnn", "fp32", {}),
        ("ncnn fp16", "ncnn", "fp16", {}),
        ("ncnn int8", "ncnn", "int8", {}),
        ("released ncnn fp16", "ncnn-release", "fp16", {"model": "nanodet-plus-m_{size}"}),
        ("released ncnn int8", "ncnn-release", "int8", {"model": "nanodet-plus-m_{size}_int8"}),
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=SUITES, required=True)
    parser.add_argument("--sizes", default="416")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "work")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = run_configs(SUITES[args.suite], [int(s) for s in args.sizes.split(",")], args.threads, args.runs,
                         args.work, baseline="onnxruntime fp32")
    if args.json:
        args.json.write_text(json.dumps({"cpu": platform.processor() or platform.machine(),
                                         "threads": args.threads, "sizes": report}, indent=1))


if __name__ == "__main__":
    main()
