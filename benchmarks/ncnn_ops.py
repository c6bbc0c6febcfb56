"""Where ncnn's time goes, per layer type and kernel, FP32 against INT8: why ncnn INT8 is slower than its FP32 on
x86.

    python benchmarks/ncnn_ops.py [--size 416] [--threads 2] [--runs 50] [--work DIR] [--packed-int8] [--json FILE]

Exports the shared nanodet-plus-m weights to ncnn FP32 and INT8 into --work once (INT8 calibrated on calib-train),
builds ncnn from the pinned sources with NCNN_BENCHMARK=ON (its per-layer timer; cached under ~/.cache like the
app's build) and ncnn_ops.cpp against it, and runs both models by turns on a real val-dev tensor with the options
the toolkit's runtime uses (runtimes/ncnn.py; on x86 a model with INT8 depthwise convolutions runs unpacked;
--packed-int8: packed all the same). Each figure is the median
over runs of the time one run spends in that layer type. The timer adds a little per layer: compare rows.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from statistics import median

from _exports import ensure_export, profile_parser, report_layers, val_images

LAYER_LINE = re.compile(r"^(\S+)\s+(\S+)\s+([\d.]+)ms\s+\|(.*)$")
KERNEL = re.compile(r"kernel: (\d+) x (\d+)")


def build_program(work: Path) -> Path:
    """ncnn_ops.cpp linked against ncnn built with NCNN_BENCHMARK=ON."""
    from nanodet_deploy.native.ncnn_build import build_ncnn

    package, _ = build_ncnn("host", {"NCNN_BENCHMARK": "ON"})
    root = package.parents[2]
    program = work / "ncnn_ops"
    source = Path(__file__).with_suffix(".cpp")
    if not program.is_file() or program.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["g++", "-O2", "-std=c++17", str(source), "-I", str(root / "include" / "ncnn"),
                        str(root / "lib" / "libncnn.a"), "-fopenmp", "-lpthread", "-o", str(program)], check=True)
    return program


def layer_kinds(param: Path) -> dict[str, str]:
    """Layer name -> "int8" for the convolutions the .param quantizes, "" otherwise."""
    from nanodet_deploy.ncnn_format import read

    return {layer.name: "int8" if layer.int8 else "" for layer in read(param).layers}


def parse(stderr: str, kinds: dict[str, dict[str, str]]):
    """{precision: [Counter((type, kernel) -> ms) per measured run]}, {precision: Counter((type, kernel) -> layers)}."""
    runs, layers, current = defaultdict(list), defaultdict(Counter), None
    for line in stderr.splitlines():
        if line.startswith("=== "):
            precision, number = line[4:].split()
            current = precision if int(number) >= 0 else None
            if current:
                runs[current].append(Counter())
            continue
        match = LAYER_LINE.match(line)
        if not match or current is None:
            continue
        kind, name, ms, rest = match.groups()
        kernel = KERNEL.search(rest)
        label = " ".join(p for p in (f"{kernel[1]}x{kernel[2]}" if kernel else "", kinds[current].get(name, "")) if p)
        runs[current][-1][(kind, label)] += float(ms)
        if len(runs[current]) == 1:
            layers[current][(kind, label)] += 1
    return runs, layers


def main():
    parser = profile_parser(__doc__)
    parser.add_argument("--packed-int8", action="store_true",
                        help="INT8 with ncnn's packed layout even with INT8 depthwise convolutions")
    parser.add_argument("--json", type=Path, help="Also write the table here.")
    args = parser.parse_args()

    import numpy as np

    from nanodet_deploy.manifest import read_manifest
    from nanodet_deploy.ncnn_format import read
    from nanodet_deploy.processing import preprocess
    from nanodet_deploy.runtimes.ncnn import has_int8_depthwise, precision_options

    args.work.mkdir(parents=True, exist_ok=True)
    folders = {p: ensure_export(args.work, "ncnn", args.size, p, args.threads) for p in ("fp32", "int8")}
    files = {p: {role: folder / name for role, name in read_manifest(folder).files.items()}
             for p, folder in folders.items()}
    packing = {p: precision_options(p, int8_depthwise=has_int8_depthwise(read(files[p]["model"])))
               ["use_packing_layout"] for p in folders}
    if args.packed_int8:
        packing["int8"] = True
    tensor = preprocess(val_images(1)[0], read_manifest(folders["fp32"]).processing_config())[0]
    raw = args.work / "ncnn_ops_input.f32"
    np.ascontiguousarray(tensor[0], np.float32).tofile(raw)
    model = read(files["fp32"]["model"])
    command = [build_program(args.work), raw, args.size, args.size, args.threads, args.runs]
    for p in folders:
        command += [files[p]["model"], files[p]["weights"], int(packing[p])]
    command += [model.inputs[0], *model.outputs]
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=True)
    runs, layers = parse(result.stderr, {p: layer_kinds(files[p]["model"]) for p in folders})

    def median_ms(precision, key):
        return median(run[key] for run in runs[precision])

    totals = {p: median(sum(run.values()) for run in runs[p]) for p in folders}
    heading = [f"ncnn {args.size}x{args.size}, {args.threads} threads, {args.runs} runs each, interleaved, INT8 "
               f"{'packed' if packing['int8'] else 'unpacked'}; median sum of layer times: FP32 {totals['fp32']:.2f} "
               f"ms, INT8 {totals['int8']:.2f} ms"]
    report_layers(set(layers["fp32"]) | set(layers["int8"]),
                  lambda p, k: median(run[k] for run in runs[p]), lambda p, k: layers[p][k], 10, heading, args.json,
                  {"size": args.size, "threads": args.threads, "runs": args.runs, "int8_packed": packing["int8"],
                   "total_ms": totals})


if __name__ == "__main__":
    main()
