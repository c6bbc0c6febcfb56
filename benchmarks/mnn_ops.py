"""Where MNN's time goes, per op type, FP32 against INT8: why MNN INT8 is slower than its FP32 on x86.

    python benchmarks/mnn_ops.py [--size 416] [--threads 2] [--runs 50] [--work DIR] [--json FILE]

Exports the shared nanodet-plus-m weights to MNN FP32 and INT8 into --work once (INT8 calibrated on
calib-train), then runs both through MNN's Interpreter/Session API with a per-op callback
(``runSessionWithCallBackInfo``), the two models taking turns run by run on real val-dev input tensors. The
callbacks cost time of their own, so the totals are above ``latency.py``'s; compare op types, not totals.
Each figure is the median over runs of the time one run spends in that op type.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from statistics import median

import numpy as np

from _exports import profile_fp32_and_int8, profile_parser


class OpProfile:
    """One MNN session and the time it spends per op type (MNN's own type names, "[ DT_INT8 ]" for int8 ops)."""

    def __init__(self, model: Path, threads: int):
        import MNN

        self.interpreter = MNN.Interpreter(str(model))
        self.session = self.interpreter.createSession({"numThread": threads, "precision": "high"})
        self.input = self.interpreter.getSessionInput(self.session)
        self.reset()

    def run(self, tensor: np.ndarray) -> None:
        import MNN

        self.input.copyFrom(MNN.Tensor(tensor.shape, MNN.Halide_Type_Float, tensor, MNN.Tensor_DimensionType_Caffe))
        started, seconds = [0.0], Counter()

        def begin(tensors, op):
            started[0] = time.perf_counter()
            return True

        def end(tensors, op):
            seconds[op.getType()] += time.perf_counter() - started[0]
            self.calls[op.getType()] += 1
            return True

        t0 = time.perf_counter()
        self.interpreter.runSessionWithCallBackInfo(self.session, begin, end)
        self.totals.append(time.perf_counter() - t0)
        self.runs.append(seconds)

    def reset(self) -> None:
        self.runs: list[Counter] = []  # per run: op type -> seconds
        self.calls, self.totals = Counter(), []

    def median_ms(self, op: str) -> float:
        """Median over runs of the time one run spends in ``op`` (medians: this machine class is noisy)."""
        return 1e3 * median(run[op] for run in self.runs)


def main():
    parser = profile_parser(__doc__)
    parser.add_argument("--json", type=Path, help="Also write the table here.")
    args = parser.parse_args()

    profiles = profile_fp32_and_int8("mnn", lambda folder, threads: OpProfile(folder / "model.mnn", threads),
                                     args.size, args.threads, args.runs, args.work)
    fp32, int8 = profiles["fp32"], profiles["int8"]
    print(f"MNN {args.size}x{args.size}, {args.threads} threads, {args.runs} runs each, interleaved; "
          f"median total with callbacks: FP32 {1e3 * median(fp32.totals):.2f} ms, "
          f"INT8 {1e3 * median(int8.totals):.2f} ms")
    print(f"{'op type':34s} {'FP32 ms':>8s} {'calls':>6s} {'INT8 ms':>8s} {'calls':>6s}")
    ops = sorted(set(fp32.calls) | set(int8.calls), key=lambda o: -(fp32.median_ms(o) + int8.median_ms(o)))
    for op in ops:
        print(f"{op:34s} {fp32.median_ms(op):8.2f} {fp32.calls[op] // args.runs:6d} "
              f"{int8.median_ms(op):8.2f} {int8.calls[op] // args.runs:6d}")
    if args.json:
        args.json.write_text(json.dumps({
            "size": args.size, "threads": args.threads, "runs": args.runs,
            "total_ms": {"fp32": 1e3 * median(fp32.totals), "int8": 1e3 * median(int8.totals)},
            "ops": [{"type": op, "fp32_ms": fp32.median_ms(op), "fp32_calls": fp32.calls[op] // args.runs,
                     "int8_ms": int8.median_ms(op), "int8_calls": int8.calls[op] // args.runs} for op in ops]},
            indent=1) + "\n")


if __name__ == "__main__":
    main()
