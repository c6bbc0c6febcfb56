"""Video FPS, sequential against pipelined (nanodet_deploy.streaming), for export folders, in one run.

    python benchmarks/streaming.py EXPORT_DIR [EXPORT_DIR ...] [--frames 79] [--rounds 3] [--threads 2] [--streams 2]

The video is the val-dev images as 640x480 frames, decoded once into memory (so the figure is the detector's,
not the video decoder's). Each round runs every export sequentially and then pipelined, interleaved; the best
round of each is kept. Prints the machine line (CPU, instruction sets, versions) and FPS per export.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2

from nanodet_deploy import Detector
from nanodet_deploy.machine import machine, machine_line
from nanodet_deploy.images import read_image
from nanodet_deploy.streaming import pipelined, sequential

SHARED = Path(__file__).resolve().parents[2] / "shared"


def fps(run, detector, frames) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in run(detector, iter(frames)))
    return count / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exports", type=Path, nargs="+")
    parser.add_argument("--frames", type=int, default=79)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", type=int, help="OpenVINO exports: pipelined in throughput mode with this many "
                                                      "streams (the threads split between them)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    paths = sorted((SHARED / "coco/val-dev/images").iterdir())[: args.frames]
    frames = [cv2.resize(read_image(p), (640, 480)) for p in paths]
    detectors = {str(e): Detector.from_export(e, threads=args.threads) for e in args.exports}
    # the pipelined detector: the same export, in throughput mode where the backend has one and --streams asks
    piped = {str(e): Detector.from_export(e, threads=args.threads, streams=args.streams)
             if args.streams and detectors[str(e)].runtime.backend == "openvino" else detectors[str(e)]
             for e in args.exports}
    best = {name: {"sequential": 0.0, "pipelined": 0.0} for name in detectors}
    for name in detectors:  # warm-up
        list(sequential(detectors[name], iter(frames[:5])))
        list(pipelined(piped[name], iter(frames[:5])))
    for _ in range(args.rounds):
        for name in detectors:
            for mode, run, detector in (("sequential", sequential, detectors[name]),
                                        ("pipelined", pipelined, piped[name])):
                best[name][mode] = max(best[name][mode], fps(run, detector, frames))
    info = machine()
    print(machine_line(info))
    print(f"{len(frames)} frames 640x480, {args.threads} inference threads, best of {args.rounds} rounds"
          + (f", OpenVINO pipelined with {args.streams} streams" if args.streams else ""))
    for name, result in best.items():
        runtime = detectors[name].runtime
        print(f"{runtime.backend} {runtime.precision} ({name}): sequential {result['sequential']:.1f} FPS, "
              f"pipelined {result['pipelined']:.1f} FPS, x{result['pipelined'] / result['sequential']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "threads": args.threads, "streams": args.streams,
                                         "frames": len(frames),
                                         "results": best}, indent=1))


if __name__ == "__main__":
    main()
