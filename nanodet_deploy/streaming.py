"""Video files and cameras: frames in, (frame, detections) out, in order — sequentially or pipelined.

``pipelined`` overlaps the three stages of consecutive frames: one thread preprocesses frame n+1, one runs
inference on frame n (several frames at once where the runtime has an async queue: OpenVINO with ``streams``),
one postprocesses frame n-1. OpenCV, numpy and every runtime
release the GIL in their kernels, so the stages really run at once; the detections are the ones
``Detector(image)`` gives, frame by frame (tests/test_streaming.py checks it).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import ImageError, UsageError
from .images import printable
from .processing import Detections, postprocess, preprocess

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
CAMERA_PREFIX = "camera:"
# OpenCV reads an index >= 100 as camera INDEX % 100 of backend INDEX // 100 * 100 (200: V4L2's camera 0), so
# only 0-99 name a camera
MAX_CAMERA_INDEX = 99
# frames waiting between two stages: enough to keep each stage busy, few enough to bound latency and memory
QUEUE_DEPTH = 2


def is_video_source(path: str | Path) -> bool:
    """A video file (by suffix) or a camera (``camera:INDEX``)."""
    text = str(path)
    return text.startswith(CAMERA_PREFIX) or Path(text).suffix.lower() in VIDEO_SUFFIXES


def camera_index(text: str) -> int:
    """INDEX of ``camera:INDEX``: ASCII digits only (str.isdigit() also takes '²' and '٣', which int() then
    refuses or reads as another number), 0 to MAX_CAMERA_INDEX; UsageError otherwise."""
    index = text[len(CAMERA_PREFIX):]
    if not (index.isascii() and index.isdigit() and len(index) <= 4 and int(index) <= MAX_CAMERA_INDEX):
        raise UsageError(f"{printable(text)}: a camera is camera:INDEX with INDEX 0 to {MAX_CAMERA_INDEX}, "
                         f"e.g. camera:0")
    return int(index)


def check_sources(sources) -> None:
    """Every source a camera:INDEX or an existing file, before any model is loaded or frame is read."""
    for source in map(str, sources):
        if source.startswith(CAMERA_PREFIX):
            camera_index(source)
        elif not Path(source).is_file():
            raise UsageError(f"{printable(source)}: no such video file")


def open_source(source: str | Path):
    """cv2.VideoCapture for a video file or ``camera:INDEX``; a clear error when it cannot be opened."""
    import cv2

    text = str(source)
    camera = text.startswith(CAMERA_PREFIX)
    index = camera_index(text) if camera else None
    if not camera and not Path(text).is_file():
        raise UsageError(f"{text}: no such video file")
    # OpenCV logs each backend it tries and fails with; the one error below says it once
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        capture = cv2.VideoCapture(index if camera else text)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        raise ImageError(f"{text}: cannot be opened as a video" + (" (no such camera?)" if camera else ""))
    return capture


def frames_of(capture, limit: int | None = None) -> Iterator[np.ndarray]:
    """The BGR frames of an opened capture, until it ends (or ``limit`` frames)."""
    count = 0
    try:
        while limit is None or count < limit:
            ok, frame = capture.read()
            if not ok:
                return
            count += 1
            yield frame
    finally:
        capture.release()


def sequential(detector, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, Detections]]:
    """Frame by frame: preprocess, inference, postprocess, then the next frame."""
    for frame in frames:
        yield frame, detector(frame)


_DONE = object()


def pipelined(detector, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, Detections]]:
    """The same results as ``sequential``, with preprocessing of the next frame and postprocessing of the
    previous one running while the current one is inferred; a runtime whose ``run_stream`` overlaps requests
    (OpenVINO's throughput mode) keeps several frames in inference at once. An exception in any stage is raised here."""
    prepared: queue.Queue = queue.Queue(QUEUE_DEPTH)
    inferred: queue.Queue = queue.Queue(QUEUE_DEPTH)
    finished: queue.Queue = queue.Queue(QUEUE_DEPTH)
    stop = threading.Event()
    runtime = detector.runtime
    input_format = runtime.input_format

    def put(target: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                target.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(source: queue.Queue):
        while not stop.is_set():
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                continue
        return _DONE

    def prepare():
        try:
            for frame in frames:
                tensor, matrix = preprocess(frame, detector.processing, input_format)
                if not put(prepared, (frame, tensor, matrix)):
                    break
            else:
                put(prepared, _DONE)
        except BaseException as error:  # handed to the consumer, raised there
            put(prepared, error)
        close = getattr(frames, "close", None)  # a generator of frames_of releases its capture
        if close:
            close()

    def infer():
        waiting: deque = deque()  # (frame, matrix) of the tensors handed to the runtime, in order
        ending = [_DONE]

        def tensors():
            while True:
                item = get(prepared)
                if item is _DONE or isinstance(item, BaseException):
                    ending[0] = item
                    return
                frame, tensor, matrix = item
                waiting.append((frame, matrix))
                yield tensor

        try:
            outputs = runtime.run_stream(tensors())
            for raw in outputs:
                frame, matrix = waiting.popleft()
                if not put(inferred, (frame, raw[0], matrix)):
                    return
            put(inferred, ending[0])
        except BaseException as error:
            put(inferred, error)

    def finish():
        while True:
            item = get(inferred)
            if item is _DONE or isinstance(item, BaseException):
                put(finished, item)
                return
            frame, raw, matrix = item
            try:
                detections = postprocess(raw, matrix, (frame.shape[1], frame.shape[0]), detector.processing)
            except BaseException as error:
                put(finished, error)
                return
            if not put(finished, (frame, detections)):
                return

    workers = [threading.Thread(target=stage, daemon=True, name=f"nanodet-{stage.__name__}")
               for stage in (prepare, infer, finish)]
    for worker in workers:
        worker.start()
    try:
        while True:
            result = finished.get()
            if result is _DONE:
                return
            if isinstance(result, BaseException):
                raise result
            yield result
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=5)
