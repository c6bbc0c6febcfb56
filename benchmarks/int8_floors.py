"""Where the label-free INT8 floors of the parity gate come from (parity.Budgets.int8_*): each target's default
INT8 export from the shared calibration images against the same export calibrated on one 1x1 grey image (a
broken calibration), measured against PyTorch on real val-dev images (no annotations) and on the gate's
synthetic inputs.

    python benchmarks/int8_floors.py [--size 416] [--targets onnx,openvino,mnn,ncnn]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from _exports import CALIB, SHARED, VAL_IMAGES
from nanodet_deploy.export import export, gate
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.model import load
from nanodet_deploy.parity import Budgets
from nanodet_deploy.runtimes.torch import TorchRuntime

WORK = Path(__file__).resolve().parent / "work" / "int8_floors"
LOOSE = Budgets(int8_score_cosine=0.0, int8_distance_cosine=0.0, int8_agreement=0.0)  # measure, never reject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--targets", default="onnx,openvino,mnn,ncnn")
    args = parser.parse_args()
    checkpoint = SHARED / f"weights/nanodet-plus-m_{args.size}.pth"
    grey = WORK / "grey-calib"
    grey.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(grey / "grey.png"), np.full((1, 1, 3), 128, np.uint8))
    reference = TorchRuntime(load(checkpoint).module, threads=2)
    rows = []
    for target in args.targets.split(","):
        for calib_name, calib in (("calib-train", CALIB), ("one grey 1x1", grey)):
            out = WORK / f"{target}-{args.size}-{'good' if calib is CALIB else 'grey'}"
            result = export(checkpoint, to=target, out=out, precision="int8", calib=calib, threads=2,
                            verify_images=VAL_IMAGES, budgets=LOOSE)
            manifest = read_manifest(result.directory)
            synthetic = gate(result.directory, reference, manifest, budgets=LOOSE, threads=2)
            real = result.report
            rows.append({"target": target, "calibration": calib_name,
                         "real_score_cos": real.score_cosine, "real_distance_cos": real.distance_cosine,
                         "real_agreement": real.agreement, "synthetic_score_cos": synthetic.score_cosine,
                         "synthetic_distance_cos": synthetic.distance_cosine})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| target | calibration | score cos (val-dev) | distance cos (val-dev) | agreement (val-dev) "
          "| score cos (synthetic) | distance cos (synthetic) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['calibration']} | {r['real_score_cos']:.4f} | {r['real_distance_cos']:.4f} | "
              f"{r['real_agreement']:.3f} | {r['synthetic_score_cos']:.4f} | {r['synthetic_distance_cos']:.4f} |")


if __name__ == "__main__":
    main()
