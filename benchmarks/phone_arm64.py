"""The phone table: ncnn exports (FP32, FP16, INT8) through the Android app's detector on ncnn's ARM64 kernels,
emulated per CPU model (nanodet_deploy/phone.py), against this machine's verified output and against PyTorch.

    python benchmarks/phone_arm64.py [--size 320] [--cpus cortex-a53,cortex-a76,max] [--precisions int8,fp32,fp16]
                                     [--fidelity-images 200] [--out benchmarks/results/phone-arm64.json]

Per export precision x image set (val-dev with its annotations; the first N of ../shared/coco/fidelity, PyTorch's
detections as ground truth) one entry in --out, written as soon as it is done; entries already there are kept and
skipped, so an interrupted run continues where it stopped. Emulation is slow (at 320, one image through one CPU
model and mode takes ~2-9 s: fp16 arithmetic is the slowest to emulate): the whole table is hours; the phones of
one entry run as parallel processes. ``--table`` prints the README table from --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _exports import SHARED, VAL_IMAGES, ensure_export
from nanodet_deploy.evaluate import CocoSet
from nanodet_deploy.export import gate
from nanodet_deploy.files import write_text_atomic
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.model import load
from nanodet_deploy.parity import Budgets
from nanodet_deploy.phone import CPU_MODELS, compare_on_phone
from nanodet_deploy.runtimes.torch import TorchRuntime

WORK = Path(__file__).resolve().parent / "work" / "phone_arm64"
FIDELITY = SHARED / "coco/fidelity/images"
ANNOTATIONS = SHARED / "coco/val-dev/instances.json"
MEASURE = Budgets(int8_min_detections=0)  # figures, not a verdict on small sets


def row(entry: dict, report: dict) -> dict:
    gate, versus = report["gate"], report["versus_export"]
    return {"set": entry["set"], "images": report["images"], "cpu": report["cpu"], "mode": report["mode"],
            "same_as_export": report["same_as_export"], "app_decodes_as_toolkit": report["app_decodes_as_toolkit"],
            "same_bits_as_first_cpu": report["same_bits_as_first_cpu"],
            "agreement_vs_export": versus["agreement"], "agreement_vs_export_interval": versus["agreement_interval"],
            "score_max_abs_vs_export": versus["score_max_abs"], "score_cosine_vs_export": versus["score_cosine"],
            "distance_max_abs_vs_export": versus["distance_max_abs"],
            "pseudo_map_vs_pytorch": gate["map_artifact"] if gate["map_against"] == "pytorch" else None,
            "map": gate["map_artifact"] if gate["map_against"] == "annotations" else None,
            "map_reference": gate["map_reference"], "agreement_vs_pytorch": gate["agreement"],
            "gate_passed": gate["passed"]}


def print_table(results: dict) -> None:
    """The README table: per entry (precision x image set) this machine's row, then each CPU model x mode."""
    print("| images | CPU model | mode | same detections as x86 | agreement vs x86 (IoU 0.9, 90% interval) | "
          "max \\|Δscore\\| vs x86 | mAP (val-dev) / pseudo-mAP vs PyTorch (fidelity) | raw output = first CPU's |")
    print("|---|---|---|---|---|---|---|---|")
    for entry in results["entries"]:
        rows = entry["rows"]
        print(f"| {entry['set']} ({rows[0]['images']}) | x86 (this machine) | {entry['precision']} | | | | "
              f"{entry['here']['map']:.4f} | |")
        for r in rows:
            quality = r["map"] if r["map"] is not None else r["pseudo_map_vs_pytorch"]
            low, high = r["agreement_vs_export_interval"] or (float("nan"), float("nan"))
            print(f"| | {r['cpu']} | {r['mode']} | {r['same_as_export']}/{r['images']} | "
                  f"{r['agreement_vs_export']:.3f} [{low:.3f}, {high:.3f}] | {r['score_max_abs_vs_export']:.1e} | "
                  f"{quality:.4f} | {r['same_bits_as_first_cpu']}/{r['images']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--cpus", default=",".join(CPU_MODELS))
    parser.add_argument("--precisions", default="int8,fp32,fp16")
    parser.add_argument("--fidelity-images", type=int, default=200)
    parser.add_argument("--sets", default="val-dev,fidelity", help="which image sets, in this order")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "phone-arm64.json")
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"entries": []}
    if args.table:
        print_table(results)
        return
    checkpoint = SHARED / f"weights/nanodet-plus-m_{args.size}.pth"
    reference = TorchRuntime(load(checkpoint).module, threads=1)
    coco = CocoSet.load(VAL_IMAGES, ANNOTATIONS)
    fidelity = sorted(FIDELITY.glob("*.jpg"))[:args.fidelity_images]
    cpus = args.cpus.split(",")
    sets = {"val-dev": [p for _, p in coco.images], "fidelity": fidelity}
    for set_name in args.sets.split(","):
        for precision in args.precisions.split(","):
            images = sets[set_name]
            key = f"{args.size} {precision} {set_name} {len(images)} {','.join(cpus)}"
            if any(e["key"] == key for e in results["entries"]):
                continue
            folder = ensure_export(WORK, "ncnn", args.size, precision, threads=1)
            start = time.monotonic()
            reports = compare_on_phone(folder, read_manifest(folder), reference, images, cpus=cpus,
                                       coco_set=coco if set_name == "val-dev" else None, budgets=MEASURE, threads=1)
            entry = {"key": key, "size": args.size, "precision": precision, "set": set_name,
                     "seconds": round(time.monotonic() - start), "machine_cpus": os.cpu_count()}
            # the export on this machine against PyTorch, for context: what the phone rows are compared with
            here = gate(folder, reference, read_manifest(folder), VAL_IMAGES if set_name == "val-dev" else images,
                        ANNOTATIONS if set_name == "val-dev" else None, MEASURE, threads=1)
            entry["here"] = {"agreement_vs_pytorch": here.agreement, "map": here.map_artifact,
                             "map_against": here.map_against, "map_reference": here.map_reference}
            entry["rows"] = [row(entry, r.to_dict()) for r in reports]
            results["entries"].append(entry)
            write_text_atomic(args.out, json.dumps(results, indent=1) + "\n")
            print(f"{key}: {entry['seconds']} s")
    print_table(results)


if __name__ == "__main__":
    main()
