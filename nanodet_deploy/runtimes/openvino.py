"""OpenVINO on the CPU, driven as OpenVINO's own Python samples do: Core -> compile_model -> infer request.

The inference precision is explicit: on CPUs with AVX-512 BF16 OpenVINO runs "FP32" models in bf16 unless
told otherwise, so we always set INFERENCE_PRECISION_HINT and report what the compiled model says it runs.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import openvino as ov

from ..errors import UsageError
from ..processing import BGR8_NHWC, FLOAT_NCHW
from .base import Runtime

# --infer-precision, in the toolkit's precision names -> OpenVINO's INFERENCE_PRECISION_HINT ("f32", OpenVINO's own
# spelling, is accepted too); and back, for what the compiled model reports it runs
INFER_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
OUR_NAMES = {"f32": "fp32", "bf16": "bf16"}
# Requests in flight per stream in throughput mode: a second one waits queued, so a stream never idles while
# Python hands its result on. 416 INT8, 2 streams x 1 thread, 79 video frames, one run: pipelined x1.39 of
# sequential with OpenVINO's optimal 1 per stream, x1.58 with 2 (benchmarks/streaming.py --streams 2).
REQUESTS_PER_STREAM = 2


class OpenVinoRuntime(Runtime):
    backend = "openvino"
    reads_stored_precision = True

    def __init__(self, model_path: str | Path, precision: str = "fp32", threads: int | None = None,
                 infer_precision: str = "fp32", streams: int | None = None, weights_path: str | Path | None = None):
        infer_precision = OUR_NAMES.get(infer_precision, infer_precision)
        if infer_precision not in INFER_PRECISIONS:
            raise UsageError(f"--infer-precision must be one of {', '.join(INFER_PRECISIONS)}, got '{infer_precision}'")
        if streams is not None and not 1 <= streams <= 64:
            raise UsageError(f"--streams must be between 1 and 64, got {streams}")
        # streams: OpenVINO's throughput mode, the threads split between that many inference streams, each
        # running its own frame (run_stream). 416 INT8, 2 threads, this repo's AVX-512 VNNI machine: 1 stream
        # 57 frames/s, 2 streams x 1 thread 72 frames/s (inference only; benchmarks/streaming.py end to end)
        config = {"PERFORMANCE_HINT": "THROUGHPUT" if streams else "LATENCY", "INFERENCE_PRECISION_HINT": INFER_PRECISIONS[infer_precision]}
        if streams:
            config["NUM_STREAMS"] = streams
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        # the .bin named explicitly: beside a pinned /proc/self/fd path there is no "model.bin" to find
        model = core.read_model(str(model_path), str(weights_path)) if weights_path else core.read_model(str(model_path))
        self.stored_precision = stored_precision(model)
        # an IR with the normalisation in it (export --u8-input) takes the warped 8-bit image, NHWC
        self.input_format = BGR8_NHWC if model.input(0).get_element_type() == ov.Type.u8 else FLOAT_NCHW
        self._dtype = np.uint8 if self.input_format == BGR8_NHWC else np.float32
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()  # created once, reused by every run
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32" / "bf16"
        self.inference_precision = OUR_NAMES.get(ran, ran)
        # what actually executes: int8 kernels where FakeQuantize sits, the rest in the inference precision
        self.precision = f"int8+{self.inference_precision}" if precision == "int8" else self.inference_precision
        self._lock = threading.Lock()  # one infer request: one call at a time

    @classmethod
    def from_export(cls, files: dict[str, Path], manifest, threads: int | None = None,
                    infer_precision: str | None = None, streams: int | None = None) -> "OpenVinoRuntime":
        """``files``: role -> path of each manifest file (manifest.pinned_files)."""
        return cls(files["model"], precision=manifest.precision, threads=threads,
                   infer_precision=infer_precision or "fp32", streams=streams, weights_path=files.get("weights"))

    def run(self, tensor: np.ndarray) -> np.ndarray:
        with self._lock:
            result = self.request.infer({0: np.ascontiguousarray(tensor, self._dtype)})
            return np.array(result[0])  # a copy: the request's output buffer is reused by the next call

    def run_stream(self, tensors: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Outputs of ``tensors``, in order, with as many in flight as the compiled model has streams
        (OpenVINO's AsyncInferQueue, as its throughput samples drive it)."""
        optimal = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        jobs = optimal * REQUESTS_PER_STREAM if optimal > 1 else 1
        if jobs == 1:
            yield from map(self.run, tensors)
            return
        done: dict[int, np.ndarray] = {}
        ready = threading.Condition()

        def collect(request, index):  # on OpenVINO's thread: copy before the request is reused
            with ready:
                done[index] = np.array(request.get_output_tensor(0).data)
                ready.notify_all()

        requests = ov.AsyncInferQueue(self.compiled, jobs)
        requests.set_callback(collect)
        try:
            yield from self._in_order(tensors, requests, done, ready, jobs)
        finally:
            requests.wait_all()  # a consumer that stops early leaves no request running

    def _in_order(self, tensors, requests, done, ready, jobs):
        sent = received = 0
        for tensor in tensors:
            requests.start_async({0: np.ascontiguousarray(tensor, self._dtype)}, sent)  # waits for a free one
            sent += 1
            while received in done or sent - received >= jobs:  # hand out what is finished, in order
                with ready:
                    ready.wait_for(lambda: received in done)
                    raw = done.pop(received)
                received += 1
                yield raw
        requests.wait_all()
        while received < sent:
            yield done.pop(received)
            received += 1


def stored_precision(model) -> str:
    """What the IR holds: "int8" (FakeQuantize or integer weights from NNCF), "fp16" (FP16-compressed weights)
    or "fp32"."""
    ops = model.get_ops()
    if any(op.get_type_name() == "FakeQuantize" for op in ops):
        return "int8"
    constants = {op.get_output_element_type(0).get_type_name() for op in ops if op.get_type_name() == "Constant"}
    if constants & {"i8", "u8", "i4", "u4"}:
        return "int8"
    return "fp16" if "f16" in constants else "fp32"
