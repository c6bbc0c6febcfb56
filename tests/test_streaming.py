"""Videos and cameras: the pipelined iterator gives exactly the detections of Detector(frame), in order, and
`nanodet-deploy infer` on a video writes JSON lines and an annotated .mp4."""

import json
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from nanodet_deploy.detector import Detector
from nanodet_deploy.images import read_image
from nanodet_deploy.streaming import frames_of, open_source, pipelined, sequential

from .helpers import VAL_IMAGES, error_lines, run_cli, weights

FRAMES = 12


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A real video file: val-dev images as 640x480 MJPEG frames."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for image_path in sorted(VAL_IMAGES.iterdir())[:FRAMES]:
        writer.write(cv2.resize(read_image(image_path), (640, 480)))
    writer.release()
    return path


@pytest.fixture(scope="module")
def detector():
    return Detector(checkpoint=weights(320), threads=2)


def decoded(video):
    return list(frames_of(open_source(video)))


def same(a, b) -> bool:
    return (np.array_equal(a.labels, b.labels) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.boxes, b.boxes))


def test_pipelined_gives_each_frames_own_detections_in_order(video, detector):
    frames = decoded(video)
    assert len(frames) == FRAMES
    expected = [detector(frame) for frame in frames]
    for run in (pipelined, sequential):
        results = list(run(detector, frames_of(open_source(video))))
        assert len(results) == FRAMES
        for (frame, dets), original, want in zip(results, frames, expected):
            assert np.array_equal(frame, original) and same(dets, want)
    assert sum(len(d) for d in expected) > 100


def test_pipelined_raises_a_stage_error_and_stops_early_cleanly(video, detector):
    def broken():
        yield from decoded(video)[:3]
        raise RuntimeError("camera unplugged")

    seen = []
    with pytest.raises(RuntimeError, match="camera unplugged"):
        for frame, _ in pipelined(detector, broken()):
            seen.append(frame)
    assert len(seen) == 3  # what came before the error is delivered first

    stream = pipelined(detector, frames_of(open_source(video)))
    next(stream)
    stream.close()  # returns (the stages stop) instead of waiting for the rest of the video


def test_infer_on_a_video_writes_json_lines_and_an_annotated_video(video, detector, tmp_path):
    result = run_cli("infer", "--checkpoint", weights(320), "--threads", "2", video, "--json", tmp_path / "d.jsonl",
                     "--save-vis", tmp_path / "vis")
    assert result.returncode == 0, result.stderr
    assert f"{FRAMES} frames in" in result.stdout and "pipelined" in result.stdout
    lines = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    for line, frame in zip(lines, decoded(video)):
        want = detector(frame).to_list(detector.class_names)
        assert (line["width"], line["height"]) == (640, 480)
        assert [d["label"] for d in line["detections"]] == [d["label"] for d in want]
        assert np.allclose([d["score"] for d in line["detections"]], [d["score"] for d in want], atol=1e-6)
    annotated = decoded(tmp_path / "vis" / "clip.mp4")
    assert len(annotated) == FRAMES and annotated[0].shape == (480, 640, 3)
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["clip.mp4"]  # no temporary file left

    limited = run_cli("infer", "--checkpoint", weights(320), video, "--max-frames", "3", "--sequential", "--json",
                      tmp_path / "three.jsonl")
    assert limited.returncode == 0, limited.stderr
    assert len((tmp_path / "three.jsonl").read_text().splitlines()) == 3 and "sequential" in limited.stdout


def test_video_usage_errors(video, tmp_path):
    image = sorted(VAL_IMAGES.iterdir())[0]
    cases = [((video, image), 2, "not both"), ((tmp_path / "missing.mp4",), 2, "no such video file"),
             (("camera:x",), 2, "camera:INDEX"), (("camera:97",), 1, "camera:97: cannot be opened")]
    for sources, code, message in cases:
        result = run_cli("infer", "--checkpoint", weights(320), *sources, "--json", tmp_path / "out.jsonl")
        lines = error_lines(result)
        assert result.returncode == code and len(lines) == 1 and message in lines[0], (sources, result.stderr)
        assert not (tmp_path / "out.jsonl").exists()


def test_openvino_throughput_mode_keeps_frames_in_order(video, tmp_path):
    """OpenVINO with 2 streams and requests in flight (AsyncInferQueue, run_stream): each frame's own
    detections, in order — the same as that runtime frame by frame."""
    out = tmp_path / "ov"
    result = run_cli("export", "--to", "openvino", "--u8-input", "--checkpoint", weights(320), "--out", out)
    assert result.returncode == 0, result.stderr
    detector = Detector.from_export(out, threads=2, streams=2)
    assert detector.runtime.compiled.get_property("NUM_STREAMS") == 2
    frames = decoded(video)
    expected = [detector(frame) for frame in frames]
    results = list(pipelined(detector, iter(frames)))
    assert len(results) == FRAMES
    assert all(np.array_equal(frame, original) and same(dets, want)
               for (frame, dets), original, want in zip(results, frames, expected))
    early = pipelined(detector, iter(frames))  # a consumer that stops after two frames leaves nothing running
    assert [same(dets, want) for (_, dets), want in zip([next(early), next(early)], expected)] == [True, True]
    early.close()


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_camera_strings_are_parsed_strictly(tmp_path):
    """camera:INDEX takes ASCII digits 0-99 only (at 5c11f11 'camera:²' passed str.isdigit() and ended in a
    traceback in int(); a 30-digit index overflowed in OpenCV); each is one line and exit 2, before any model."""
    for source in ("camera:²", "camera:٣", "camera:" + "9" * 30, "camera:100", "camera:-1", "camera: 1", "camera:"):
        result = run_cli("infer", "--checkpoint", weights(320), source, "--json", tmp_path / "out.jsonl")
        lines = error_lines(result)
        assert result.returncode == 2 and len(lines) == 1 and "camera:INDEX with INDEX 0 to 99" in lines[0], \
            (source, result.stderr)
    assert not list(tmp_path.iterdir())


def test_lost_or_undecodable_frames_are_published_only_as_partial(video, tmp_path):
    """A truncated video (at 5c11f11: exit 0, its JSON lines published as if complete) and one whose frames none
    decode (exit 0, "0 frames", an empty file published): one line each, exit 1, outputs under .partial names
    with a last JSON line recording what is missing — a complete video of the same run keeps its own name."""
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) // 2])
    announced = int(cv2.VideoCapture(str(cut)).get(cv2.CAP_PROP_FRAME_COUNT))
    decodable = len(decoded(cut))
    assert announced == FRAMES and 0 < decodable < FRAMES  # the container still announces every frame
    # a real video's header and index with every frame's data zeroed: it opens, announces its frames, none decode
    blank = tmp_path / "blank.avi"
    index = len(data) - data.rfind(b"idx1")
    frames_start = data.find(b"movi") + 4
    blank.write_bytes(data[:frames_start] + bytes(len(data) - frames_start - index) + data[-index:])
    unopenable = tmp_path / "noise.avi"
    unopenable.write_bytes(bytes(range(256)) * 64)
    result = run_cli("infer", "--checkpoint", weights(320), video, cut, blank, unopenable, "--json",
                     tmp_path / "d.jsonl", "--save-vis", tmp_path / "vis")
    assert result.returncode == 1, result.stderr
    errors = [line for line in error_lines(result) if line.startswith("error:")]  # FFmpeg's own chatter aside
    assert errors == [f"error: {cut}: {decodable} of the {FRAMES} frames its container announces were decoded, "
                      f"{FRAMES - decodable} lost (truncated or damaged)",
                      f"error: {blank}: no frame could be decoded", f"error: {unopenable}: cannot be opened as a video"], \
        result.stderr
    assert not (tmp_path / "d.jsonl").exists()
    lines = _lines(tmp_path / "d.partial.jsonl")
    assert len(lines) == FRAMES + decodable + 1
    record = lines[-1]
    assert record["partial"] is True and [s["frames"] for s in record["sources"]] == [FRAMES, decodable, 0, 0]
    assert [s["complete"] for s in record["sources"]] == [True, False, False, False]
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["clip.mp4", "cut.partial.mp4"]
    assert len(decoded(tmp_path / "vis" / "cut.partial.mp4")) == decodable


def test_video_frames_over_the_pixel_limit_are_refused_before_decoding(video, tmp_path):
    """The container states 640x480: with a 0.3 MP limit the video is refused before a frame is decoded (at
    5c11f11 a 16000x16000 video was decoded whole, 2.7 GB peak): one line, exit 1, only a partial record."""
    result = run_cli("infer", "--checkpoint", weights(320), video, "--json", tmp_path / "d.jsonl",
                     env={"NANODET_DEPLOY_MAX_IMAGE_PIXELS": "300000"})
    lines = error_lines(result)
    assert result.returncode == 1 and lines == [f"error: {video}: frames of 640x480 pixels, over the 300,000 pixel "
                                                f"limit (NANODET_DEPLOY_MAX_IMAGE_PIXELS)"], result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["d.partial.jsonl"]
    record, = _lines(tmp_path / "d.partial.jsonl")
    assert record["sources"][0]["frames"] == 0 and "pixel limit" in record["sources"][0]["problem"]


@pytest.mark.parametrize("signal_number, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_the_whole_multi_video_run(video, tmp_path, signal_number, code):
    """SIGTERM or Ctrl-C during the first of two videos ends the run (at 5c11f11 only the current video ended:
    the next ran in full and Ctrl-C exited 0): exit 143 / 130, the JSON lines published as partial with the
    second video recorded as not started, no temporary file left."""
    long_video = tmp_path / "long.avi"  # 10x the clip: seconds of work, so the signal lands mid-video
    frames = decoded(video)
    writer = cv2.VideoWriter(str(long_video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for frame in frames * 10:
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "nanodet_deploy", "infer", "--checkpoint", str(weights(320)),
                                "--sequential", str(long_video), str(video), "--json", str(out / "d.jsonl"),
                                "--save-vis", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # a shell's background job starts with SIGINT ignored; Ctrl-C must reach this one
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not any(p.stat().st_size > 0 for p in out.glob(".d.jsonl.*")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert sorted(p.name for p in out.iterdir()) == ["d.partial.jsonl", "long.partial.mp4"], stderr
    lines = _lines(out / "d.partial.jsonl")
    record = lines[-1]
    stopped_by = "SIGTERM" if signal_number == signal.SIGTERM else "Ctrl-C"
    assert record["partial"] is True and record["not_started"] == [str(video)]
    assert record["sources"][0]["stopped_by"] == stopped_by and 0 < record["sources"][0]["frames"] < 10 * FRAMES
    assert len(lines) == record["sources"][0]["frames"] + 1
    assert f"not started: {video}" in stderr
