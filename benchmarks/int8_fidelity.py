"""INT8 fidelity without labels: each backend's default INT8 export (calibrated on calib-train, as `export --int8`
makes it) against PyTorch on ../shared/coco/fidelity — 600 unlabelled val2017 images that nothing is ever
calibrated or tuned on. Per backend: agreement (PyTorch's detections >= 0.3 found with the same label) at IoU 0.9
(the gate's) and 0.5, pseudo-mAP (PyTorch's detections >= 0.3 as ground truth), score and distance cosine and
max |error|, each figure that varies by image with its 90 % bootstrap interval over images (paired: the same
resamples for every backend). PyTorch runs once per image; every backend sees the same input tensor.

    python benchmarks/int8_fidelity.py [--size 416] [--targets onnxruntime,openvino,mnn,ncnn] [--images 600]
                                       [--also LABEL=EXPORT_DIR ...]

--also adds an export made elsewhere (e.g. by an older commit, for a before/after table) as one more row, paired
with the others on the same images and resamples.

Writes benchmarks/results/int8-fidelity.json (one entry per run, keyed by size, targets, image count and
the recipe's commit).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from _exports import SHARED, ensure_export
from nanodet_deploy.evaluate import (CocoSet, bootstrap_counts, class_matches, interval_of, pseudo_annotations,
                                     resampled_map)
from nanodet_deploy.images import read_image
from nanodet_deploy.machine import machine, machine_line
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.model import load
from nanodet_deploy.parity import AGREEMENT_MIN_SCORE, Comparison, agreement_with_interval
from nanodet_deploy.processing import preprocess
from nanodet_deploy.runtimes import open_export
from nanodet_deploy.runtimes.torch import TorchRuntime
from nanodet_deploy.targets import TARGETS

FIDELITY = SHARED / "coco/fidelity/images"
WORK = Path(__file__).resolve().parent / "work" / "int8_fidelity"
RESULTS = Path(__file__).resolve().parent / "results" / "int8-fidelity.json"


def recipe_commit() -> str:
    """The commit whose recipe is measured ("+changes" when the package differs from it): results are keyed by
    it, so a recipe change never overwrites the figures of an older one (the export cache follows the code by
    itself: bench_cells.code_digest)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "nanodet_deploy"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def pseudo_ground_truth(reference, names: list[str], num_classes: int, folder: Path) -> CocoSet:
    """PyTorch's detections >= AGREEMENT_MIN_SCORE as a COCO instances file, so that evaluate's matching and
    bootstrap (class_matches, resampled_map) score the pseudo-mAP and its interval like a real mAP."""
    path = folder / "pseudo.json"
    path.write_text(json.dumps({"images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
                                "annotations": pseudo_annotations(reference, AGREEMENT_MIN_SCORE),
                                "categories": [{"id": c} for c in range(num_classes)]}))
    return CocoSet.load(FIDELITY, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--targets", default=",".join(n for n, t in TARGETS.items() if "int8" in t.precisions))
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=EXPORT_DIR")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    folders = {t: ensure_export(WORK, t, args.size, "int8", args.threads) for t in targets}
    for item in args.also:
        label, _, folder = item.partition("=")
        folders[label] = Path(folder)
    targets = list(folders)
    commit = recipe_commit()
    paths = sorted(FIDELITY.glob("*.jpg"))[:args.images]
    loaded = load(SHARED / f"weights/nanodet-plus-m_{args.size}.pth")
    processing = loaded.spec.processing_config()
    reference = TorchRuntime(loaded.module, threads=args.threads)
    runtimes, conversions = {}, {}
    for target, folder in folders.items():
        manifest = read_manifest(folder)
        runtimes[target] = open_export(folder, manifest, threads=args.threads)
        conversions[target] = {"float_layers": manifest.conversion.get("float_layers"),
                               "calibration_method": manifest.conversion.get("calibration_method"),
                               "placement": manifest.conversion.get("placement")}
    comparisons = {t: Comparison(processing, t, "int8") for t in targets}
    start = time.monotonic()
    for k, path in enumerate(paths):
        image = read_image(path)
        tensor, matrix = preprocess(image, processing)
        ref_raw = reference.run(tensor)[0]
        for target, runtime in runtimes.items():
            comparisons[target].add(ref_raw, runtime.run(tensor)[0], matrix, (image.shape[1], image.shape[0]),
                                    str(path))
        if (k + 1) % 100 == 0:
            print(f"{k + 1}/{len(paths)} images, {time.monotonic() - start:.0f} s", flush=True)
    counts = bootstrap_counts(len(paths))
    first = comparisons[targets[0]]
    with tempfile.TemporaryDirectory() as tmp:
        truth = pseudo_ground_truth(first.ref_dets, [p.name for p in paths], processing.num_classes, Path(tmp))
        # the pseudo-mAP of PyTorch itself is 1 on every resample: a backend's interval is its own
        assert np.allclose(resampled_map(class_matches(truth, first.ref_dets), counts[:3]), 1.0)
        rows = []
        for target in targets:
            c = comparisons[target]
            report = c.report(None, True)
            row = {"backend": target, "images": len(paths), "reference_detections": report.reference_detections,
                   "score_cosine": report.score_cosine, "distance_cosine": report.distance_cosine,
                   "score_max_abs": report.score_max_abs, "distance_max_abs": report.distance_max_abs,
                   **conversions[target]}
            for iou in (0.9, 0.5):
                row[f"agreement_{iou}"], row[f"agreement_{iou}_interval"], _ = agreement_with_interval(
                    c.ref_dets, c.art_dets, counts, min_iou=iou)
            matches = class_matches(truth, c.art_dets)
            row["pseudo_map"] = float(resampled_map(matches, np.ones((1, len(paths))))[0])
            row["pseudo_map_interval"] = interval_of(resampled_map(matches, counts))
            rows.append(row)
    spread = max(r["agreement_0.9"] for r in rows) - min(r["agreement_0.9"] for r in rows)
    entry = {"key": f"{args.size} {','.join(targets)} {len(paths)} {commit}", "size": args.size, "commit": commit,
             "machine": machine_line(machine()), "seconds": round(time.monotonic() - start),
             "agreement_spread": spread, "rows": rows}
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"entries": []}
    results["entries"] = [e for e in results["entries"] if e["key"] != entry["key"]] + [entry]
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{args.size}, {len(paths)} fidelity images, recipe at {commit}, 90% intervals over images; "
          f"agreement spread {spread:.3f}\n")
    print("| backend | agreement IoU 0.9 | agreement IoU 0.5 | pseudo-mAP | score cos | distance cos | "
          "max abs score |\n|---|---|---|---|---|---|---|")
    for r in rows:
        a, b, m = r["agreement_0.9_interval"], r["agreement_0.5_interval"], r["pseudo_map_interval"]
        print(f"| {r['backend']} | {r['agreement_0.9']:.3f} [{a[0]:.3f}, {a[1]:.3f}] | {r['agreement_0.5']:.3f} "
              f"[{b[0]:.3f}, {b[1]:.3f}] | {r['pseudo_map']:.3f} [{m[0]:.3f}, {m[1]:.3f}] | "
              f"{r['score_cosine']:.4f} | {r['distance_cosine']:.4f} | {r['score_max_abs']:.3f} |")


if __name__ == "__main__":
    main()
