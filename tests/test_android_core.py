"""The Android demo's native detector core (android_demo/core, C++17), built on the host with CMake and the
distribution's g++, against the Python pre/post-processing: raw tensors produced by our ncnn runtime on real
val-dev images go through both decoders, which must give the same boxes."""

import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import torch

from nanodet_deploy.detector import Detector, processing_config
from nanodet_deploy.images import read_image
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.model import ModelSpec, build_model, get_preset
from nanodet_deploy.phone import config_text
from nanodet_deploy.processing import Detections, postprocess, preprocess

from .helpers import ROOT, VAL_IMAGES, assert_same_code_detections, export_cli, weights
from .test_config import official_config, write

CORE = ROOT / "android_demo" / "core"
IMAGES = sorted(VAL_IMAGES.iterdir())


def build_core_cli(build, *cmake_options):
    if shutil.which("cmake") is None or shutil.which("g++") is None:
        pytest.fail("the native core test needs cmake and g++ (apt install cmake g++)")
    for command in (["cmake", "-S", CORE, "-B", build, "-DNANODET_CORE_CLI=ON", "-DCMAKE_BUILD_TYPE=Release",
                     *cmake_options], ["cmake", "--build", build]):
        result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    return build / "nanodet_core_cli"


@pytest.fixture(scope="module")
def core_cli(tmp_path_factory):
    return build_core_cli(tmp_path_factory.mktemp("core-build"))


@pytest.fixture(scope="module")
def core_cli_builds(core_cli, tmp_path_factory):
    """The driver as built, and built without the x86 AVX2+FMA kernels: the warp's baseline loops, which CPUs
    without FMA (and every other ISA's compiler) run, with std::fma as a library call."""
    baseline = build_core_cli(tmp_path_factory.mktemp("core-build-baseline"),
                              "-DCMAKE_CXX_FLAGS=-DNANODET_NO_SIMD_DISPATCH")
    return {"dispatched": core_cli, "baseline": baseline}


def native_detections(cli, tmp_path, processing, raw, size):
    (tmp_path / "config.txt").write_text(config_text(processing))
    np.ascontiguousarray(raw, np.float32).tofile(tmp_path / "raw.f32")
    result = subprocess.run([str(cli), "postprocess", str(tmp_path / "config.txt"), str(tmp_path / "raw.f32"),
                             str(size[0]), str(size[1])], capture_output=True, text=True, check=True)
    rows = [line.split() for line in result.stdout.splitlines()]
    return (np.array([int(r[0]) for r in rows], np.int64), np.array([float(r[1]) for r in rows]),
            np.array([[float(v) for v in r[2:]] for r in rows]).reshape(-1, 4))


def assert_same_boxes(cli, tmp_path, detector, images) -> int:
    """Python and native decoders on the same raw tensors: the same detections (``parity.same_detections``,
    SAME_CODE tolerance) in the same order, scores equal to the bit (both copy the raw output's). Returns how many
    detections were compared."""
    total = 0
    for path in images:
        image = read_image(path)
        tensor, matrix = preprocess(image, detector.processing)
        raw = detector.runtime.run(tensor)[0]
        size = (image.shape[1], image.shape[0])
        ours = postprocess(raw, matrix, size, detector.processing)
        labels, scores, boxes = native_detections(cli, tmp_path, detector.processing, raw, size)
        assert_same_code_detections(ours, Detections(boxes, scores, labels), detector.processing, path.name)
        total += len(labels)
    return total


def test_native_core_equals_python_on_the_stock_model(core_cli, built, tmp_path):
    detector = Detector.from_export(built("ncnn", 416)[0], threads=2)  # the session's ncnn export
    # measured: 79 images, 7,620 detections, same labels and order, worst IoU 0.999997, scores equal
    assert assert_same_boxes(core_cli, tmp_path, detector, IMAGES) > 5000


def test_the_app_core_refuses_an_output_with_nan_or_inf(core_cli, tmp_path):
    """A NaN or Inf anywhere in the raw output (here one distance logit of a point holding no candidate) is counted
    in the core's pass over the output: no detections, an error naming the count, as Python's ModelOutputError."""
    processing = processing_config(get_preset("nanodet-plus-m_416"))
    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.random((processing.num_points, 80), np.float32) ** 8,
                          rng.normal(0, 2, (processing.num_points, 32)).astype(np.float32)], axis=1)
    raw[7, :80] = 0.01  # point 7 holds no candidate: its distances are never decoded
    assert len(native_detections(core_cli, tmp_path, processing, raw, (640, 480))[0]) > 0
    for poison in (np.nan, np.inf, -np.inf):
        poisoned = raw.copy()
        poisoned[7, 100] = poison
        poisoned.tofile(tmp_path / "raw.f32")
        result = subprocess.run([str(core_cli), "postprocess", str(tmp_path / "config.txt"), str(tmp_path / "raw.f32"),
                                 "640", "480"], capture_output=True, text=True)
        assert (result.returncode, result.stdout) == (1, ""), result
        assert result.stderr.strip().endswith("the model produced NaN/Inf (1 values)"), result.stderr


def test_native_core_equals_python_on_a_custom_three_class_non_square_export(core_cli, tmp_path):
    """A self-trained-like 3-class 320x192 letterboxed model with random weights, exported to ncnn. Random
    weights put every score near the head's prior (~0.01), so the score threshold is lowered to 0.005 for
    both decoders to have candidates to compare."""
    cfg_path = write(tmp_path, official_config(3, ["cat", "dog", "bird"], (320, 192)))
    torch.manual_seed(0)
    model = build_model(ModelSpec.from_yaml(cfg_path))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "mine.pth")
    export = tmp_path / "ncnn"
    result = export_cli(export, "ncnn", "--config", cfg_path, "--checkpoint", tmp_path / "mine.pth",
                        "--keep-ratio")
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(export)
    assert (manifest.input_width, manifest.input_height, manifest.class_names, manifest.keep_ratio) == \
        (320, 192, ["cat", "dog", "bird"], True)
    detector = Detector.from_export(export, threads=2)
    detector.processing = replace(detector.processing, score_thr=0.005)
    assert assert_same_boxes(core_cli, tmp_path, detector, IMAGES[:20]) > 100


@pytest.mark.parametrize("build", ["dispatched", "baseline"])
def test_native_preprocess_is_bit_identical_to_python(core_cli_builds, build, tmp_path):
    """The app's warp and normalisation give the very float32 tensor Python gives (``processing.preprocess``,
    itself OpenCV 5.0's warp bit for bit, tests/test_processing.py): every val-dev image, and random images of
    odd sizes, for square and non-square inputs, stretched and letterboxed; with the x86 SIMD kernels and with the
    baseline loops. Measured: 0 values differ (before, a float bilinear sample was up to one grey level off on
    ~0.5% of pixels, which INT8 amplified into different boxes)."""
    rng = np.random.default_rng(0)
    randoms = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(37, 1000, 3), (999, 13, 3), (1, 1, 3),
                                                                          (2, 500, 3), (333, 200, 3)]]
    cases = [((416, 416), False), ((416, 416), True), ((320, 192), True), ((330, 250), False), ((17, 33), True)]
    base = processing_config(get_preset("nanodet-plus-m_416"))
    compared = 0
    for size, keep_ratio in cases:
        cfg = replace(base, input_size=size, keep_ratio=keep_ratio)
        (tmp_path / "config.txt").write_text(config_text(cfg))
        images = [read_image(p) for p in (IMAGES if size == (416, 416) else IMAGES[:10])] + randoms
        for index, image in enumerate(images):
            np.ascontiguousarray(image).tofile(tmp_path / "image.bgr")
            subprocess.run([str(core_cli_builds[build]), "preprocess", str(tmp_path / "config.txt"),
                            str(tmp_path / "image.bgr"), str(image.shape[1]), str(image.shape[0]),
                            str(tmp_path / "t.f32")], check=True)
            native = np.fromfile(tmp_path / "t.f32", np.float32).reshape(1, 3, size[1], size[0])
            python, _ = preprocess(image, cfg)
            assert np.array_equal(native.view(np.uint32), python.view(np.uint32)), (size, keep_ratio, index)
            compared += 1
    assert compared == 79 * 2 + 10 * 3 + 5 * 5


def test_android_install_puts_the_export_into_the_apps_assets(tmp_path):
    """`nanodet-deploy android EXPORT --app APP` (and `export --to ncnn --android APP`) write the model files
    and the manifest the app reads; other exports and other folders are refused."""
    app = tmp_path / "app_project"
    (app / "app").mkdir(parents=True)
    (app / "app" / "build.gradle.kts").write_text("// demo\n")
    export = tmp_path / "ncnn"
    result = export_cli(export, "ncnn", "--checkpoint", weights(320), "--android", app)
    assert result.returncode == 0, result.stderr
    assets = app / "app" / "src" / "main" / "assets"
    assert sorted(p.name for p in assets.iterdir()) == ["model.bin", "model.param", "nanodet.json"]
    assert (assets / "model.bin").read_bytes() == (export / "model.bin").read_bytes()
    assert read_manifest(assets).input_width == 320
    from .helpers import run_cli

    result = run_cli("android", export, "--app", tmp_path)
    assert result.returncode == 2 and "not the Android demo project" in result.stderr
    result = export_cli(tmp_path / "onnx", "onnxruntime", "--checkpoint", weights(320), "--android", app)
    assert result.returncode == 2 and "--android needs --to ncnn" in result.stderr


def test_no_model_constants_in_the_app_sources():
    """Input size, classes, strides, reg_max and mean/std come from nanodet.json only."""
    sources = [p for p in (ROOT / "android_demo").rglob("*") if p.suffix in (".kt", ".cpp", ".h")]
    assert len(sources) >= 6
    for path in sources:
        text = path.read_text()
        for constant in ("103.53", "116.28", "123.675", "57.375", "57.12", "58.395", "416", "320", "reg_max = 7",
                         "{8, 16, 32, 64}", "\"person\""):
            assert constant not in text, f"{path.name} hard-codes {constant}"


def test_a_fresh_clone_has_the_gradle_wrapper():
    """`./gradlew assembleDebug` (what the CLI tells users) works on a fresh clone: the wrapper script and jar
    are committed and name the Gradle the Android plugin needs (AGP 8.5 needs Gradle >= 8.7)."""
    import zipfile

    app = ROOT / "android_demo"
    assert (app / "gradlew").stat().st_mode & 0o111, "gradlew must be executable"
    with zipfile.ZipFile(app / "gradle" / "wrapper" / "gradle-wrapper.jar") as jar:
        assert "Main-Class: org.gradle.wrapper.GradleWrapperMain" in jar.read("META-INF/MANIFEST.MF").decode()
    properties = (app / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    assert "distributions/gradle-8.7-bin.zip" in properties
    assert 'id("com.android.application") version "8.5.2"' in (app / "build.gradle.kts").read_text()
