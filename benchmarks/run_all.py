"""The full benchmark matrix on the shared weights and val-dev, written where the README links it:
``benchmarks/results/<cpu-name>.json``, ``.md`` (the table) and ``.png`` (latency vs mAP).

    python benchmarks/run_all.py [--sizes 416] [--threads 2] [--runs 100] [--precisions fp32,int8]
                                 [--mode throughput] [--u8-input]

Every backend x precision (fp32, fp16, int8 calibrated on calib-train, OpenVINO bf16) plus PyTorch, all timed
interleaved in one run; ratios are to ONNX Runtime FP32 of the same size and threads.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from _exports import CALIB, SHARED, VAL_IMAGES
from nanodet_deploy import bench, bench_results
from nanodet_deploy.bench_cells import all_precisions
from nanodet_deploy.machine import machine as machine_info, machine_line

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="416")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--precisions", default=",".join(all_precisions()))
    parser.add_argument("--mode", default="latency", choices=bench.MODES)
    parser.add_argument("--u8-input", action="store_true", help="OpenVINO exported with --u8-input")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "bench")
    args = parser.parse_args()

    started = time.perf_counter()
    sizes = [(int(s), int(s)) for s in args.sizes.split(",")]
    results = bench.run(SHARED / "weights/nanodet-plus-m_416.pth", sizes=sizes,
                        threads=[int(t) for t in args.threads.split(",")], runs=args.runs, export_root=args.work,
                        calib=CALIB, images=VAL_IMAGES, ann=SHARED / "coco/val-dev/instances.json",
                        precisions=args.precisions.split(","), mode=args.mode, u8_input=args.u8_input)
    rows = bench_results.rows(results)
    machine = machine_info()
    stem = RESULTS / re.sub(r"[^A-Za-z0-9]+", "-", machine["cpu"]).strip("-").lower()
    RESULTS.mkdir(exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"machine": machine, "runs": args.runs, "mode": args.mode,
                                                     "u8_input": args.u8_input, "rows": rows,
                                                     "results": [r.to_dict() for r in results]}, indent=1))
    stem.with_suffix(".md").write_text(f"{machine_line(machine)}; median of {args.runs} runs, "
                                       f"interleaved; ratio to onnxruntime fp32; mode {args.mode}"
                                       + (", OpenVINO with --u8-input" if args.u8_input else "") + "\n\n"
                                       + bench_results.markdown_table(rows) + "\n")
    bench_results.plot(rows, stem.with_suffix(".png"), title=f"nanodet-plus-m on {machine['cpu']} · "
                      + " ".join(machine["isa"]))
    print(machine_line(machine))
    print(bench_results.format_table(rows, bench_results.columns_of(rows)))
    print(f"wrote {stem}.json/.md/.png in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
