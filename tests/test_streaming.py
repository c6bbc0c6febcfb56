"""Videos and cameras: the pipelined iterator gives exactly the detections of Detector(frame), in order, and
`nanodet-deploy infer` on a video writes JSON lines and an annotated .mp4."""

import json

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
