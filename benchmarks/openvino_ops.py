"""Where OpenVINO's time goes, per layer type and kernel, FP32 against INT8 (issue 33): which layers run int8
kernels, which stay in float, and what the reorders and reshapes around them cost.

    python benchmarks/openvino_ops.py [--size 416] [--threads 2] [--runs 50] [--work DIR] [--json FILE]

Exports the shared nanodet-plus-m weights to OpenVINO FP32 and INT8 into --work once (INT8 calibrated on
calib-train, the toolkit's default recipe), compiles both as runtimes/openvino.py does (LATENCY, f32 inference
precision, --threads) with PERF_COUNT on, and runs them by turns on real val-dev input tensors. Per layer type of
the compiled graph and the kernel OpenVINO picked for it (``exec_type``, e.g. ``brgconv_avx512_amx_I8``), the
median over runs of the time one run spends there, and how many such layers run. Also the node counts of each IR
as read (before OpenVINO's CPU plugin fuses it): Reshape and FakeQuantize, the figures issue 33 compares.
Profiling adds time of its own, so the totals are above ``latency.py``'s; compare rows, not totals.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from statistics import median

from _exports import profile_fp32_and_int8, profile_parser, report_layers
from nanodet_deploy.manifest import read_manifest


class LayerProfile:
    """One compiled OpenVINO model and the time it spends per (layer type, kernel)."""

    def __init__(self, folder: Path, threads: int):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(folder / read_manifest(folder).files["model"]))
        self.ir_nodes = Counter(op.get_type_name() for op in model.get_ops())
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                                     "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True})
        self.request = compiled.create_infer_request()
        self.reset()

    def run(self, tensor) -> None:
        self.request.infer([tensor])
        seconds, layers = Counter(), Counter()
        for info in self.request.profiling_info:
            if info.status.name != "EXECUTED":  # fused into a neighbour or optimised out
                continue
            key = (info.node_type, info.exec_type)
            seconds[key] += info.real_time.total_seconds()
            layers[key] += 1
        self.runs.append(seconds)
        self.layers = layers

    def reset(self) -> None:
        self.runs: list[Counter] = []  # per run: (layer type, kernel) -> seconds
        self.layers = Counter()

    def median_ms(self, key) -> float:
        return 1e3 * median(run[key] for run in self.runs)

    def total_ms(self) -> float:
        return 1e3 * median(sum(run.values()) for run in self.runs)


def main():
    parser = profile_parser(__doc__)
    parser.add_argument("--json", type=Path, help="Also write the table here.")
    args = parser.parse_args()

    profiles = profile_fp32_and_int8("openvino", LayerProfile, args.size, args.threads, args.runs, args.work)
    fp32, int8 = profiles["fp32"], profiles["int8"]
    heading = [f"OpenVINO {args.size}x{args.size}, {args.threads} threads, {args.runs} runs each, interleaved; median "
               f"sum of layer times: FP32 {fp32.total_ms():.2f} ms, INT8 {int8.total_ms():.2f} ms"]
    heading += [f"IR nodes {node:16s} FP32 {fp32.ir_nodes[node]:4d}  INT8 {int8.ir_nodes[node]:4d}"
                for node in ("Reshape", "FakeQuantize", "Convolution", "GroupConvolution")]
    report_layers(set(fp32.layers) | set(int8.layers), lambda p, k: profiles[p].median_ms(k),
                  lambda p, k: profiles[p].layers[k], 34, heading, args.json,
                  {"size": args.size, "threads": args.threads, "runs": args.runs,
                   "total_ms": {"fp32": fp32.total_ms(), "int8": int8.total_ms()},
                   "ir_nodes": {"fp32": dict(fp32.ir_nodes), "int8": dict(int8.ir_nodes)}})


if __name__ == "__main__":
    main()
