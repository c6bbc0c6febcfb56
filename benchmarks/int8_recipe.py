"""The shared INT8 recipe on every backend: each target's default INT8 export from the shared calibration
images, gated on val-dev against PyTorch, with the paired 90% bootstrap interval of the mAP drop and of the
agreement, the float set the sensitivity chose and its share of the weights.

    python benchmarks/int8_recipe.py [--sizes 416,320] [--targets onnx,openvino,mnn,ncnn]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _exports import CALIB, SHARED, VAL_IMAGES
from nanodet_deploy.export import export
from nanodet_deploy.parity import Budgets

WORK = Path(__file__).resolve().parent / "work" / "int8_recipe"
VAL_ANN = SHARED / "coco/val-dev/instances.json"
MEASURE = Budgets(int8_map_drop_points=100.0, int8_score_cosine=0.0, int8_distance_cosine=0.0, int8_agreement=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="416")
    parser.add_argument("--targets", default="onnx,openvino,mnn,ncnn")
    parser.add_argument("--calib-method", default=None, help="e.g. nncf for --targets openvino")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for target in args.targets.split(","):
            start = time.perf_counter()
            result = export(SHARED / f"weights/nanodet-plus-m_{size}.pth", to=target, precision="int8",
                            out=WORK / f"{target}-{size}-{args.calib_method or 'default'}", calib=CALIB,
                            calib_method=args.calib_method, verify_images=VAL_IMAGES, verify_ann=VAL_ANN,
                            budgets=MEASURE, threads=2)
            r, c = result.report, result.conversion
            rows.append({"target": target, "size": size, "seconds": round(time.perf_counter() - start),
                         "score_cos": r.score_cosine, "distance_cos": r.distance_cosine, "agreement": r.agreement,
                         "agreement_interval": r.agreement_interval, "map": r.map_artifact,
                         "map_reference": r.map_reference, "drop_points": r.map_drop_points,
                         "drop_interval_points": r.map_drop_points_interval,
                         "float_layers": c.get("float_layers"), "float_weight_share": c.get("float_weight_share")})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| target | size | score cos | distance cos | agreement (90%) | mAP (FP32) | drop points (90%) "
          "| float convs |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, d = r["agreement_interval"], r["drop_interval_points"]
        print(f"| {r['target']} | {r['size']} | {r['score_cos']:.4f} | {r['distance_cos']:.4f} | "
              f"{r['agreement']:.3f} ({a[0]:.3f}..{a[1]:.3f}) | {r['map']:.4f} ({r['map_reference']:.4f}) | "
              f"{r['drop_points']:.2f} ({d[0]:.2f}..{d[1]:.2f}) | {len(r['float_layers'] or [])} |")


if __name__ == "__main__":
    main()
