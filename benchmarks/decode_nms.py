"""Cost of the shared decode + NMS per image, on real raw outputs of the reference model over val-dev.

    python benchmarks/decode_nms.py [--size 416] [--repeat 5]

Each image's post-processing is timed right after its own inference (the cache state it has in real use),
``--repeat`` times, the fastest repeat kept per image; preprocess and inference are timed in the same run
for scale. Prints median / p90 / max in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from nanodet_deploy import Detector
from nanodet_deploy.images import read_image
from nanodet_deploy import native
from nanodet_deploy.processing import postprocess, postprocess_numpy, preprocess

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=416, choices=(320, 416))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=Path, default=SHARED / "coco/val-dev/images")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    detector = Detector(checkpoint=args.weights or SHARED / f"weights/nanodet-plus-m_{args.size}.pth",
                        threads=args.threads)
    cfg = detector.processing
    times = {"preprocess": [], "inference": [], "decode+nms": [], "numpy decode+nms": []}
    candidates = []
    for path in sorted(args.images.glob("*.jpg")):
        image = read_image(path)
        best = {k: float("inf") for k in times}
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            tensor, matrix = preprocess(image, cfg)
            t1 = time.perf_counter()
            raw = detector.raw(tensor)[0]
            t2 = time.perf_counter()
            postprocess(raw, matrix, (image.shape[1], image.shape[0]), cfg)
            t3 = time.perf_counter()
            postprocess_numpy(raw, matrix, (image.shape[1], image.shape[0]), cfg)
            t4 = time.perf_counter()
            for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                best[key] = min(best[key], value)
        for key in times:
            times[key].append(best[key] * 1e3)
        candidates.append(int((raw[:, :cfg.num_classes] > cfg.score_thr).sum()))
    report = {"cpu": platform.processor() or platform.machine(), "size": args.size, "threads": args.threads,
              "native": native.available(),
              "images": len(candidates), "candidates_per_image_median": float(np.median(candidates))}
    print(f"native pre/post-processing: {'yes' if native.available() else 'no (numpy)'}")
    print(f"{len(candidates)} images at {args.size}, {args.threads} threads, median "
          f"{np.median(candidates):.0f} candidates (score > {cfg.score_thr}) per image")
    print(f"{'stage':<18}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}")
    for key, values in times.items():
        stats = {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
                 "max": float(np.max(values))}
        report[key] = stats
        print(f"{key:<18}{stats['median']:>11.3f}{stats['p90']:>9.3f}{stats['max']:>9.3f}")
    ratio = report["decode+nms"]["median"] / report["inference"]["median"]
    print(f"decode+nms / inference = {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
