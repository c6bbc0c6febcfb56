"""Where ONNX Runtime's time goes, per op type, FP32 against INT8 (issue 33): which ops run the int8 kernels
(QLinearConv and friends, after ONNX Runtime fuses our QDQ pairs), and what stays float or converts between.

    python benchmarks/onnxruntime_ops.py [--size 416] [--threads 2] [--runs 50] [--work DIR] [--json FILE]

Exports the shared nanodet-plus-m weights to ONNX Runtime FP32 and INT8 into --work once (INT8 calibrated on
calib-train, the toolkit's default recipe), opens both as runtimes/onnxruntime.py does (--threads, full graph
optimisation but the optimizers it turns off; --all-optimizers: those too) with ONNX Runtime's profiler on, and runs
them by turns on real val-dev input tensors. Per op type of the optimised graph, the median over runs of the time
one run spends there (the profiler's node events), and how many such nodes run. The profiler costs time of its own,
so compare rows, not totals.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from statistics import median

from _exports import profile_fp32_and_int8, profile_parser
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.runtimes.onnxruntime import DISABLED_OPTIMIZERS, session_options


class NodeProfile:
    """One ONNX Runtime session and the time it spends per op type, read from its profiler's trace."""

    def __init__(self, folder: Path, threads: int, runtime_optimizers: bool = True):
        import onnxruntime as ort

        self.folder = Path(tempfile.mkdtemp(prefix="ort-profile-"))
        options = session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(self.folder / "trace")
        model = folder / read_manifest(folder).files["model"]
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=DISABLED_OPTIMIZERS if runtime_optimizers else [])
        self.input = self.session.get_inputs()[0].name
        self.calls = self.warm_up = 0

    def run(self, tensor) -> None:
        self.session.run(None, {self.input: tensor})
        self.calls += 1

    def reset(self) -> None:
        self.warm_up = self.calls  # the trace cannot restart: the runs so far are left out of per_run

    def per_run(self) -> tuple[list[Counter], Counter]:
        """(per timed run: op type -> seconds, op type -> nodes per run), from the trace ``end_profiling`` writes:
        a node belongs to the run (``model_run`` event) whose time span holds it."""
        trace = json.loads(Path(self.session.end_profiling()).read_text())
        shutil.rmtree(self.folder, ignore_errors=True)  # the trace was only for this
        spans = [(e["ts"], e["ts"] + e["dur"]) for e in trace if e.get("cat") == "Session" and e["name"] == "model_run"]
        spans = sorted(spans)[self.warm_up:]
        runs = [Counter() for _ in spans]
        nodes = Counter()
        for event in trace:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                for k, (begin, end) in enumerate(spans):
                    if begin <= event["ts"] <= end:
                        runs[k][event["args"]["op_name"]] += event["dur"] / 1e6
                        nodes[event["args"]["op_name"]] += 1
                        break
        return runs, Counter({op: count // max(len(runs), 1) for op, count in nodes.items()})


def main():
    parser = profile_parser(__doc__)
    parser.add_argument("--json", type=Path, help="Also write the table here.")
    parser.add_argument("--all-optimizers", action="store_true",
                        help="Every ONNX Runtime graph optimizer, also those runtimes/onnxruntime.py turns off.")
    args = parser.parse_args()
    profiles = profile_fp32_and_int8("onnxruntime", lambda folder, threads: NodeProfile(
        folder, threads, runtime_optimizers=not args.all_optimizers), args.size, args.threads, args.runs, args.work)
    (fp32_runs, fp32_nodes), (int8_runs, int8_nodes) = (profiles[p].per_run() for p in ("fp32", "int8"))

    def ms(runs, op) -> float:
        return 1e3 * median(run[op] for run in runs)

    def total(runs) -> float:
        return 1e3 * median(sum(run.values()) for run in runs)

    ops = sorted(set(fp32_nodes) | set(int8_nodes), key=lambda o: -(ms(fp32_runs, o) + ms(int8_runs, o)))
    print(f"ONNX Runtime {args.size}x{args.size}, {args.threads} threads, {args.runs} runs each, interleaved; median "
          f"sum of node times: FP32 {total(fp32_runs):.2f} ms, INT8 {total(int8_runs):.2f} ms")
    print(f"{'op type':28s} {'FP32 ms':>8s} {'nodes':>6s} {'INT8 ms':>8s} {'nodes':>6s}")
    for op in ops:
        print(f"{op:28s} {ms(fp32_runs, op):8.3f} {fp32_nodes[op]:6d} {ms(int8_runs, op):8.3f} {int8_nodes[op]:6d}")
    if args.json:
        args.json.write_text(json.dumps({
            "size": args.size, "threads": args.threads, "runs": args.runs,
            "total_ms": {"fp32": total(fp32_runs), "int8": total(int8_runs)},
            "ops": [{"type": op, "fp32_ms": ms(fp32_runs, op), "fp32_nodes": fp32_nodes[op],
                     "int8_ms": ms(int8_runs, op), "int8_nodes": int8_nodes[op]} for op in ops]}, indent=1))


if __name__ == "__main__":
    main()
