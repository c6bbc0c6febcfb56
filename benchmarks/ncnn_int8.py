"""How the ncnn INT8 defaults were chosen: calibration method x layers kept in float -> val-dev mAP, and the
per-layer sensitivity ranking (measured on calibration images, never on val-dev).

    python benchmarks/ncnn_int8.py [--size 416] [--sensitivity-images 16]

Statistics are gathered once from the FP32 export; every variant is quantized from them, written, loaded in
pip ncnn with int8 inference on, and evaluated on val-dev against the annotations.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from _exports import CALIB, SHARED, VAL_IMAGES, ensure_export
from nanodet_deploy import ncnn_format
from nanodet_deploy.converters import ncnn as ncnn_converter
from nanodet_deploy.converters import ncnn_int8
from nanodet_deploy.converters.calibration import calibration_images, calibration_tensors
from nanodet_deploy.evaluate import CocoSet, evaluate
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.processing import postprocess, preprocess
from nanodet_deploy.runtimes.ncnn import NcnnRuntime


def quantized_runtime(folder: Path, table: dict, work: Path) -> NcnnRuntime:
    model = ncnn_format.read(folder / "model.param", folder / "model.bin")
    ncnn_int8.quantize(model, table)
    ncnn_format.write(model, work / "q.param", work / "q.bin")
    return NcnnRuntime(work / "q.param", work / "q.bin", "int8", threads=2)


def val_map(runtime: NcnnRuntime, processing, coco_set: CocoSet) -> float:
    def detect(image):
        tensor, matrix = preprocess(image, processing)
        return postprocess(runtime.run(tensor)[0], matrix, (image.shape[1], image.shape[0]), processing)

    return evaluate(detect, coco_set, processing.num_classes)["map"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--sensitivity-images", type=int, default=16)
    parser.add_argument("--methods", default=",".join(ncnn_int8.METHODS))
    parser.add_argument("--no-sensitivity", action="store_true")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "work")
    args = parser.parse_args()

    folder = ensure_export(args.work, "ncnn", args.size, "fp32", threads=2)
    processing = read_manifest(folder).processing_config()
    coco_set = CocoSet.load(VAL_IMAGES, SHARED / "coco/val-dev/instances.json")
    model = ncnn_format.read(folder / "model.param", folder / "model.bin")
    convs = model.convolutions()
    tensors = list(calibration_tensors(calibration_images(CALIB, 100), processing))
    statistics = ncnn_int8.collect_statistics(lambda: NcnnRuntime(folder / "model.param", folder / "model.bin").net,
                                              model, convs, tensors)
    num_outputs = processing.num_classes + 4 * (processing.reg_max + 1)
    parts = {name: set(pick(model, num_outputs)) for name, pick in ncnn_converter.FLOAT_PARTS.items()}
    fp32 = NcnnRuntime(folder / "model.param", folder / "model.bin")
    print(f"FP32 val-dev mAP: {val_map(fp32, processing, coco_set):.4f}")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for method in args.methods.split(","):
            for kept in ((), ("stem",), ("head",), ("stem", "head")):
                names = set().union(*(parts[p] for p in kept)) if kept else set()
                table = ncnn_int8.calibration_table([c for c in convs if c.name not in names], statistics, method)
                score = val_map(quantized_runtime(folder, table, work), processing, coco_set)
                print(f"{method:7s} float={'+'.join(kept) or 'none':10s} val-dev mAP {score:.4f}", flush=True)

        if args.no_sensitivity:
            return
        # sensitivity: everything quantized (KL) except one layer at a time; the output error that layer removes,
        # on calibration images
        sample = tensors[:args.sensitivity_images]
        fp32 = NcnnRuntime(folder / "model.param", folder / "model.bin")
        reference = [fp32.run(t) for t in sample]

        def error(runtime):
            return float(np.mean([np.mean((runtime.run(t) - r) ** 2) for t, r in zip(sample, reference)]))

        full = ncnn_int8.calibration_table(convs, statistics, "kl")
        base = error(quantized_runtime(folder, full, work))
        gains = []
        for conv in convs:
            table = {k: v for k, v in full.items() if k != conv.name}
            gains.append((base - error(quantized_runtime(folder, table, work)), conv.name))
        print(f"all quantized (kl): output MSE {base:.5f}; layers whose float version removes the most error:")
        for gain, name in sorted(gains, reverse=True)[:10]:
            print(f"  {name:24s} {gain / base:6.1%}")


if __name__ == "__main__":
    main()
