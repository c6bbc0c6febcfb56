"""Cost of the shared preprocessing per image, ours against OpenCV's SIMD warp, in one run on this machine.

    python benchmarks/preprocess.py [--size 416] [--repeat 5] [--json OUT.json]

Per val-dev image, interleaved (each image runs every variant before the next image), the fastest of
``--repeat`` runs kept per image; medians / p90 in milliseconds and ratios to OpenCV's warp in the same run:

- ``preprocess``: what every runtime taking the float tensor gets (``processing.preprocess``: warp + normalise,
  fused in C++ when the native library is built);
- ``warp``: the 8-bit image alone (``--u8-input`` exports), ``processing.warp``;
- ``opencv warp + normalise`` / ``opencv warp``: the same through the installed OpenCV's ``cv2.warpAffine``
  (what the toolkit did before it owned the warp; 5.1's bytes differ from ours on 0.04 % of the values);
- ``numpy warp``: the implementation for installs without a compiler (on the first 10 images: it is slow).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from nanodet_deploy.machine import machine, machine_line
from nanodet_deploy.images import read_image
from nanodet_deploy.processing import ProcessingConfig, normalise, preprocess, warp, warp_matrix, warp_numpy

SHARED = Path(__file__).resolve().parents[2] / "shared"
NUMPY_IMAGES = 10
# each variant of ours against what OpenCV's warp does for the same output
OPENCV_COUNTERPART = {"preprocess": "opencv warp + normalise", "warp": "opencv warp", "numpy warp": "opencv warp"}


def opencv_warp(image, cfg):
    matrix = warp_matrix((image.shape[1], image.shape[0]), cfg.input_size, cfg.keep_ratio)
    return cv2.warpAffine(image, matrix[:2], cfg.input_size), matrix


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--keep-ratio", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--images", type=Path, default=SHARED / "coco/val-dev/images")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cfg = ProcessingConfig(input_size=(args.size, args.size), num_classes=80, keep_ratio=args.keep_ratio)
    variants = {"preprocess": lambda image: preprocess(image, cfg),
                "warp": lambda image: warp(image, cfg),
                "opencv warp + normalise": lambda image: normalise(opencv_warp(image, cfg)[0], cfg),
                "opencv warp": lambda image: opencv_warp(image, cfg),
                "numpy warp": lambda image: warp_numpy(image, cfg)}
    times = {name: [] for name in variants}
    for index, path in enumerate(sorted(args.images.glob("*.jpg"))):
        image = read_image(path)
        for name, run in variants.items():
            if name == "numpy warp" and index >= NUMPY_IMAGES:
                continue
            best = float("inf")
            for _ in range(args.repeat if name != "numpy warp" else 1):
                start = time.perf_counter()
                run(image)
                best = min(best, time.perf_counter() - start)
            times[name].append(best * 1e3)
    info = machine()
    report = {"machine": info, "machine_line": machine_line(info), "opencv": cv2.__version__, "size": args.size,
              "keep_ratio": args.keep_ratio, "images": len(times["preprocess"]), "stages": {}}
    print(machine_line(info))
    print(f"{report['images']} images at {args.size}{' letterboxed' if args.keep_ratio else ''}, OpenCV "
          f"{cv2.__version__}; numpy warp on the first {NUMPY_IMAGES}")
    print(f"{'variant':<26}{'median ms':>11}{'p90 ms':>9}{'vs opencv':>11}")
    for name, values in times.items():
        report["stages"][name] = {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}
    for name, stats in report["stages"].items():
        counterpart = OPENCV_COUNTERPART.get(name)
        ratio = f"{stats['median'] / report['stages'][counterpart]['median']:>10.2f}x" if counterpart else ""
        print(f"{name:<26}{stats['median']:>11.3f}{stats['p90']:>9.3f}{ratio}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
