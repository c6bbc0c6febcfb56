"""``infer`` on video files and cameras: JSON lines (one per frame) and annotated .mp4 files, published complete
or marked partial — never a partial result under the complete name.

A video file is complete when every frame its container announces (up to ``--max-frames``) was decoded and
detected. A truncated file decodes fewer: OpenCV 5.1's FFmpeg on 20-frame MJPEG .avi/.mkv, XVID .avi and VP8
.webm files cut at 50 % / 10 % decoded 11/3, 10/2, 5/2 and 10/0 frames, each still announcing 20 (a cut .mp4
loses its index and does not open). A camera announces nothing: it is complete at ``--max-frames``, or — without
it — when Ctrl-C ends it, its normal end. Any other end (frames lost, none decoded, SIGTERM, Ctrl-C during a video
file) publishes what was written as ``NAME.partial.EXT``, the JSON lines ending with a record of what is missing,
and Ctrl-C / SIGTERM end the whole run, not only the current source.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ImageError, Terminated
from .files import StagedFile
from .images import MAX_PIXELS_ENV, draw_detections, json_path, max_pixels
from .interrupts import uninterrupted
from .streaming import CAMERA_PREFIX, frames_of, open_source, pipelined, sequential

PARTIAL = ".partial"


def partial_name(path: Path) -> Path:
    """Where an incomplete output goes: ``d.jsonl`` -> ``d.partial.jsonl``, ``clip.mp4`` -> ``clip.partial.mp4``."""
    return path.with_name(path.stem + PARTIAL + path.suffix)


def _stopped_by(interrupt: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"


@dataclass
class SourceResult:
    """One video file or camera of a run."""

    source: str
    camera: bool
    announced: int | None          # frames the container states; None for a camera or a stream without a count
    limit: int | None              # --max-frames
    frames: int = 0                # decoded and detected
    seconds: float = 0.0
    stopped_by: str | None = None  # "Ctrl-C" or "SIGTERM"
    error: str | None = None       # why it could not be opened or read on (errors.ImageError's message)
    video: str | None = None       # the annotated .mp4 as published (its partial name when incomplete)

    @property
    def expected(self) -> int | None:
        if self.announced is None:
            return self.limit
        return min(self.announced, self.limit) if self.limit else self.announced

    @property
    def complete(self) -> bool:
        if self.frames == 0 or self.stopped_by == "SIGTERM" or self.error:
            return False
        if self.camera and self.limit is None:
            return self.stopped_by == "Ctrl-C"  # an endless camera ends by Ctrl-C; on its own it was lost
        return self.stopped_by is None and (self.expected is None or self.frames >= self.expected)

    def problem(self) -> str | None:
        """Why the source is incomplete, in a few words; None when it is complete."""
        if self.complete:
            return None
        if self.error:
            return self.error
        if self.frames == 0:
            return "no frame could be decoded" + (f" (stopped by {self.stopped_by})" if self.stopped_by else "")
        if self.stopped_by:
            return f"stopped by {self.stopped_by} after {self.frames}" + \
                (f" of {self.expected} frames" if self.expected else " frames")
        if self.expected is None:
            return f"the camera stopped delivering frames after {self.frames}"
        return f"{self.frames} of the {self.expected} frames its container announces were decoded, " \
               f"{self.expected - self.frames} lost (truncated or damaged)"

    def record(self) -> dict:
        return {**asdict(self), "complete": self.complete, "problem": self.problem()}


@dataclass
class VideoRun:
    sources: list[SourceResult] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)   # the sources a Ctrl-C / SIGTERM left out
    json: str | None = None                                 # the JSON lines as published
    interrupt: KeyboardInterrupt | None = None              # what ended the run early, to raise again

    @property
    def complete(self) -> bool:
        return not self.not_started and all(s.complete for s in self.sources)


def detect_videos(detector, sources, json_out: Path | None = None, save_vis: Path | None = None,
                  max_frames: int | None = None, pipeline: bool = True, progress=None, on_source=None) -> VideoRun:
    """Every frame of each source through ``detector`` (``pipelined`` or ``sequential``), one JSON line per frame
    into ``json_out`` and the annotated frames into ``save_vis/NAME.mp4``. ``progress(description, total)`` ->
    advance callable; ``on_source(SourceResult)`` after each source. Ctrl-C / SIGTERM (KeyboardInterrupt) ends
    the whole run: what was written is published (partial), and the interrupt is in ``VideoRun.interrupt`` for
    the caller to raise again — unless it was the normal end of the run's last source, an endless camera."""
    sources = [str(s) for s in sources]
    run = VideoRun()
    lines = StagedFile(json_out) if json_out else None
    try:
        with open(lines.tmp, "w") if lines else contextlib.nullcontext() as out:
            for index, source in enumerate(sources):
                try:
                    result, stop = _one_source(detector, source, out, save_vis, max_frames, pipeline, progress)
                except KeyboardInterrupt as stop:  # before its first frame: the source did not start
                    run.interrupt, run.not_started = stop, sources[index:]
                    break
                run.sources.append(result)
                if on_source:
                    on_source(result)
                if stop is not None:
                    run.interrupt, run.not_started = stop, sources[index + 1:]
                    break
            if out is not None and not run.complete:
                out.write(json.dumps({"partial": True, "sources": [s.record() for s in run.sources],
                                      "not_started": run.not_started}) + "\n")
    except BaseException:
        if lines:
            lines.discard()
        raise
    if lines:
        run.json = str(lines.publish(None if run.complete else partial_name(lines.path)))
    if run.complete:
        run.interrupt = None  # Ctrl-C ended the last source, an endless camera: the run's normal end
    return run


def _one_source(detector, source: str, lines, save_vis: Path | None, max_frames, pipeline, progress):
    """(SourceResult, the Ctrl-C / SIGTERM that stopped it or None)."""
    import cv2

    camera = source.startswith(CAMERA_PREFIX)
    try:
        capture = open_source(source)
    except ImageError as e:  # this source's failure: the others still run
        return SourceResult(source, camera, None, max_frames, error=_message(e, source)), None
    announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # 0 or -1 for cameras and some streams
    result = SourceResult(source, camera, announced if announced > 0 else None, max_frames)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > max_pixels():  # refused before a frame is decoded
        capture.release()
        result.error = f"frames of {width}x{height} pixels, over the {max_pixels():,} pixel limit ({MAX_PIXELS_ENV})"
        return result, None
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    name = source.replace(CAMERA_PREFIX, "camera-") if camera else Path(source).stem
    advance = progress(name, result.expected) if progress else None
    video, writer, interrupt, started = None, None, None, time.perf_counter()
    run = pipelined if pipeline else sequential
    try:
        for frame, dets in run(detector, _within_limit(frames_of(capture, max_frames), source)):
            line = json.dumps({"source": json_path(source), "frame": result.frames, "width": frame.shape[1],
                               "height": frame.shape[0], "detections": dets.to_list(detector.class_names)}) + "\n"
            drawn = draw_detections(frame, dets, detector.class_names) if save_vis else None
            with uninterrupted():  # the line, the video frame and the count that the partial record states
                if lines is not None:
                    lines.write(line)
                if save_vis:
                    if writer is None:
                        video = StagedFile(save_vis / f"{name}.mp4", keep_suffix=True)
                        writer = cv2.VideoWriter(str(video.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                 (frame.shape[1], frame.shape[0]))
                    writer.write(drawn)
                result.frames += 1
            if advance:
                advance()
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (errors.Terminated)
        result.stopped_by, interrupt = _stopped_by(stop), stop
    except ImageError as e:  # a frame over the pixel limit: what came before is kept, as partial
        result.error = _message(e, source)
    except BaseException:
        if writer is not None:
            writer.release()
            video.discard()
        raise
    finally:
        capture.release()
    result.seconds = time.perf_counter() - started
    if writer is not None:
        writer.release()
        result.video = str(video.publish(None if result.complete else partial_name(video.path)))
    return result, interrupt


def _within_limit(frames, source: str):
    """The frames, each within the pixel limit (a container need not state its frames' size)."""
    for frame in frames:
        if frame.shape[0] * frame.shape[1] > max_pixels():
            raise ImageError(f"{source}: frame of {frame.shape[1]}x{frame.shape[0]} pixels, over the "
                             f"{max_pixels():,} pixel limit ({MAX_PIXELS_ENV})")
        yield frame


def _message(error: ImageError, source: str) -> str:
    """An ImageError's message without the leading "SOURCE: " (the CLI names the source itself)."""
    text = str(error)
    return text[len(source) + 2:] if text.startswith(f"{source}: ") else text
