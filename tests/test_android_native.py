"""The Android app's own code on the host, against real ncnn: the phone's path from the manifest to the boxes.

- ncnn's C++ library is built from the source the package registry distributes (the ``ncnn`` sdist on PyPI, the
  version of the Python wheel, pinned in android_demo/core/ncnn.cmake; built by nanodet_deploy/native/ncnn_build.py,
  cached under ~/.cache/nanodet-deploy);
- the app's native code — the unmodified app/src/main/jni/nanodet_jni.cpp, android_demo/core (the detector:
  precision options from the manifest, preprocess -> ncnn -> postprocess) — is linked into the app's JNI
  library, with host stand-ins for the NDK's bitmap/asset/log calls (tests/android_host/shim);
- the app's unmodified ModelManifest.kt and NanoDetNative.kt are compiled with the Kotlin compiler from npm
  against stand-ins for AssetManager, Bitmap and org.json (tests/android_host/stubs) and run in a JVM by
  tests/android_host/Harness.kt, which does what MainActivity does: manifest from the assets folder that
  ``nanodet-deploy android`` fills, NanoDetNative.load, one detect() per ARGB_8888 bitmap.

On the 79 val-dev images its detections must equal ``nanodet-deploy infer --export`` (Python preprocessing,
the ncnn wheel, Python decode/NMS) for FP32, FP16 and INT8 exports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from nanodet_deploy.images import read_image
from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.native.ncnn_build import build_core_cli, build_ncnn
from nanodet_deploy.parity import SAME_LIBRARY, same_detections
from nanodet_deploy.processing import SCORE_THR, Detections
from nanodet_deploy.runtimes.ncnn import PRECISION_OPTIONS, precision_options

from .helpers import CALIB_IMAGES, ROOT, SHARED, VAL_IMAGES, report, run_cli
from .native_build import NCNN_VERSION, extra_options, kotlin_compiler

APP = ROOT / "android_demo"
HOST = ROOT / "tests" / "android_host"
KOTLIN_SOURCES = [APP / "app/src/main/java/io/nanodet/deploy/demo" / name
                  for name in ("NanoDetNative.kt", "ModelManifest.kt")] + [HOST / "Harness.kt"]
IMAGES = sorted(VAL_IMAGES.iterdir())


def run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command[0]}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def java_home() -> Path:
    javac = shutil.which("javac")
    if javac is None:
        pytest.fail("the app's JNI library and Kotlin need a JDK (apt install openjdk-17-jdk-headless)")
    return Path(javac).resolve().parents[1]


@pytest.fixture(scope="module")
def ncnn_package(request):
    package, seconds = build_ncnn(extra=extra_options())
    report(request, f"ncnn {NCNN_VERSION} from the PyPI sdist: "
           + (f"built in {seconds:.0f} s" if seconds else "cached build")
           + "".join(f", -D{name}={value}" for name, value in extra_options().items()))
    return package


@pytest.fixture(scope="module")
def app_cli(ncnn_package):
    """The core's command-line driver linked with the app's detector (its precision switches, its detect mode)."""
    return build_core_cli(extra=extra_options())[0]


@pytest.fixture(scope="module")
def app(ncnn_package, tmp_path_factory, request):
    """The app's JNI library and Kotlin, built for the host: ``app(assets, list, fast_fp16)`` runs them."""
    build = tmp_path_factory.mktemp("app-host-build")
    started = time.monotonic()
    home = java_home()
    run(["cmake", "-S", HOST, "-B", build / "jni", "-DCMAKE_BUILD_TYPE=Release", f"-DJAVA_HOME={home}",
         f"-Dncnn_DIR={ncnn_package}"])
    run(["cmake", "--build", build / "jni", "--parallel", "2"])
    library = build / "jni" / "libnanodetdemo.so"
    # Android 15's 16 KB pages: every LOAD segment of the app's library aligned to 16 KB
    segments = [line.split()[-1] for line in run(["readelf", "-lW", library]).stdout.splitlines()
                if line.strip().startswith("LOAD")]
    assert segments and all(int(a, 16) >= 0x4000 for a in segments), segments
    native_seconds = time.monotonic() - started
    run(["javac", "-d", build / "stubs", *sorted((HOST / "stubs").rglob("*.java"))])
    kotlinc = kotlin_compiler()
    run([kotlinc, "-cp", build / "stubs", *KOTLIN_SOURCES, "-include-runtime", "-d", build / "app.jar"])
    report(request, f"the app's JNI library built in {native_seconds:.0f} s, its Kotlin in "
           f"{time.monotonic() - started - native_seconds:.0f} s")
    java = home / "bin" / "java"

    def run_app(assets: Path, images: Path, fast_fp16: bool = False, score_threshold: float = SCORE_THR):
        return subprocess.run([str(java), f"-Djava.library.path={build / 'jni'}", "-cp",
                               f"{build / 'app.jar'}:{build / 'stubs'}", "HarnessKt", str(assets), str(images),
                               repr(score_threshold), str(int(fast_fp16))], capture_output=True, text=True)
    return run_app


@pytest.fixture(scope="module")
def bitmaps(tmp_path_factory):
    """The val-dev images as the app holds them: ARGB_8888 bitmap bytes (R, G, B, A), one list file."""
    folder = tmp_path_factory.mktemp("bitmaps")
    lines = []
    for path in IMAGES:
        image = read_image(path)
        rgba = folder / f"{path.stem}.rgba"
        cv2.cvtColor(image, cv2.COLOR_BGR2RGBA).tofile(rgba)
        lines.append(f"{rgba} {image.shape[1]} {image.shape[0]}")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder / "list.txt"


def app_assets(export, tmp_path) -> Path:
    """The app's assets folder as ``nanodet-deploy android EXPORT --app APP`` fills it."""
    project = tmp_path / "android_demo"
    (project / "app").mkdir(parents=True, exist_ok=True)
    (project / "app" / "build.gradle.kts").write_text("// the demo's module\n")
    result = run_cli("android", export, "--app", project)
    assert result.returncode == 0, result.stderr
    return project / "app" / "src" / "main" / "assets"


def app_detections(app, export, bitmaps, tmp_path, fast_fp16=False) -> tuple[list, str]:
    """The app's chain on every image: per image (labels, scores, boxes), and the precision it says it runs."""
    result = app(app_assets(export, tmp_path), bitmaps, fast_fp16)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    per_image = []
    for index in range(len(IMAGES)):
        mine = [r for r in rows if int(r[0]) == index]
        per_image.append(Detections(np.array([[float(v) for v in r[3:]] for r in mine]).reshape(-1, 4),
                                    np.array([float(r[2]) for r in mine]),
                                    np.array([int(r[1]) for r in mine], np.int64)))
    return per_image, result.stderr.strip()


def toolkit_detections(export, tmp_path) -> list:
    """``nanodet-deploy infer --export`` on the same images."""
    out = tmp_path / "infer.json"
    result = run_cli("infer", "--export", export, "--threads", "2", "--json", out, *IMAGES)
    assert result.returncode == 0, result.stderr
    entries = {e["image"].rsplit("/", 1)[-1]: e["detections"] for e in json.loads(out.read_text())}
    return [Detections.from_list(entries[p.name]) for p in IMAGES]


def agreement(app, toolkit) -> dict:
    """Per image, ``parity.same_detections`` with the SAME_LIBRARY tolerance (two builds of one ncnn on one
    machine); over all images the largest |Δscore| and smallest IoU of the pairs, the boxes left undecided (within
    the tolerance of the score threshold or of the 100th score, kept by one side only), and how many images give
    the identical label list in the same order (near-equal scores may swap)."""
    verdicts = [same_detections(theirs, mine, SAME_LIBRARY) for mine, theirs in zip(app, toolkit)]
    return {"images": len(app), "same_detections": sum(v.same for v in verdicts),
            "identical_label_lists": sum(v.same_order for v in verdicts), "boxes": sum(v.pairs for v in verdicts),
            "undecided": sum(v.undecided for v in verdicts),
            "max_abs_dscore": max(v.max_score_diff for v in verdicts), "min_iou": min(v.min_iou for v in verdicts),
            "differing": [(IMAGES[i].name, v.differing[:2]) for i, v in enumerate(verdicts) if not v.same][:3]}


def print_row(request, name: str, figures: dict, running: str) -> None:
    report(request, f"{name}: {running}; the same detections on {figures['same_detections']}/{figures['images']} "
           f"images (tolerance |Δscore| <= {SAME_LIBRARY.score:g}, IoU >= {SAME_LIBRARY.iou:g}; {figures['boxes']} "
           f"pairs, max |Δscore| {figures['max_abs_dscore']:.2e}, min IoU {figures['min_iou']:.6f}, "
           f"{figures['undecided']} boxes at a cut on one side only); identical label lists in the same order on "
           f"{figures['identical_label_lists']}/{figures['images']}")


def test_the_app_builds_the_ncnn_version_the_exporter_runs():
    import ncnn

    assert ncnn.__version__ == NCNN_VERSION, "pin the same ncnn in pyproject.toml and android_demo/core/ncnn.cmake"


def test_the_apps_precision_switches_are_the_toolkits(app_cli, built):
    """The manifest's precision sets ncnn's switches as runtimes/ncnn.py does on this machine (fp16/bf16 off for
    FP32 and INT8, fp16 storage without fp16 arithmetic for FP16, INT8 unpacked on x86 for a model with INT8
    depthwise convolutions: the released INT8 model, not ours); "fast fp16" turns fp16 storage and arithmetic on
    for any export."""
    from nanodet_deploy.ncnn_format import read
    from nanodet_deploy.runtimes.ncnn import has_int8_depthwise

    ours = built("ncnn", 416, "--int8", "--calib", CALIB_IMAGES)[0] / "model.param"
    released = SHARED / "reference/ncnn-release/nanodet-plus-m_416_int8.param"
    assert (has_int8_depthwise(read(ours)), has_int8_depthwise(read(released))) == (False, True)
    for param in (ours, released):
        for precision in PRECISION_OPTIONS:
            expected = precision_options(precision, int8_depthwise=has_int8_depthwise(read(param)))
            for fast in (False, True):
                result = subprocess.run([str(app_cli), "options", precision, str(int(fast)), str(param)],
                                        capture_output=True, text=True, check=True)
                options = {name: bool(int(v)) for name, v in (line.split() for line in result.stdout.splitlines())}
                want = dict(expected)
                if fast:
                    want.update(use_fp16_storage=True, use_fp16_packed=True, use_fp16_arithmetic=True)
                assert options == want, (param.name, precision, fast)
    result = subprocess.run([str(app_cli), "options", "weight-int8", "0", str(released)], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "unknown precision" in result.stderr


@pytest.fixture(scope="module")
def fp32_export(built):
    return built("ncnn", 416)[0]


def test_fp32_export_gives_the_toolkits_boxes_on_the_phone_chain(app, bitmaps, fp32_export, tmp_path, request):
    export = fp32_export
    toolkit = toolkit_detections(export, tmp_path)
    mine, running = app_detections(app, export, bitmaps, tmp_path)
    figures = agreement(mine, toolkit)
    print_row(request, "FP32", figures, running)
    assert running == "precision fp32"
    # every image, every box (measured: 79/79 images, 7,620 boxes, max |Δscore| 9.2e-7, min IoU 0.99999; in the
    # same order on 78/79, one near-tie swapped)
    assert figures["same_detections"] == len(IMAGES), figures["differing"]
    assert figures["boxes"] > 5000

    # the switch reaches ncnn (the precision line says so); whether it moves scores depends on the CPU's fp16
    # kernels: printed, not asserted (AMD EPYC, AVX-512: the same scores to the last bit; a phone's ARMv8.2
    # fp16 arithmetic moves them)
    fast, running = app_detections(app, export, bitmaps, tmp_path, fast_fp16=True)
    assert running == "precision fp32 + fast fp16"
    print_row(request, "FP32 with fast fp16", agreement(fast, toolkit), running)


def test_a_manifest_that_forbids_fast_fp16_keeps_it_off(app, fp32_export, tmp_path):
    """`export --arch arm64` writes fast_fp16: forbidden when fp16 arithmetic was over budget on the emulated
    phone; the app's own NanoDetNative.load then runs the verified mode whatever the switch says."""
    assets = app_assets(fp32_export, tmp_path)
    manifest = json.loads((assets / "nanodet.json").read_text())
    (assets / "nanodet.json").write_text(json.dumps({**manifest, "fast_fp16": "forbidden",
                                                     "fast_fp16_note": "cortex-a76: agreement 0.97"}))
    one = tmp_path / "one"
    one.mkdir()
    image = read_image(IMAGES[0])
    cv2.cvtColor(image, cv2.COLOR_BGR2RGBA).tofile(one / "a.rgba")
    (one / "list.txt").write_text(f"{one / 'a.rgba'} {image.shape[1]} {image.shape[0]}\n")
    result = app(assets, one / "list.txt", fast_fp16=True)
    assert result.returncode == 0 and result.stderr.strip() == "precision fp32", result.stderr


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_quantized_exports_give_the_toolkits_boxes_on_the_phone_chain(app, bitmaps, built, tmp_path,
                                                                       precision, request):
    # the exports test_export_ncnn.py checks against the official and released models
    options = ["--int8", "--calib", CALIB_IMAGES] if precision == "int8" else ["--fp16"]
    export = built("ncnn", 416, *options)[0]
    assert read_manifest(export).precision == precision
    toolkit = toolkit_detections(export, tmp_path)
    mine, running = app_detections(app, export, bitmaps, tmp_path)
    figures = agreement(mine, toolkit)
    print_row(request, precision.upper(), figures, running)
    assert running == f"precision {precision}"
    if precision == "int8":
        # Our INT8 exports run ncnn's packed kernels on x86 (their depthwise convs are float, runtimes/ncnn.py), and
        # those round the float steps between int8 layers as each build's compiler fused them; a flipped int8
        # rounding moves a few boxes. The app's ncnn built here vs the wheel, the same input bytes, 416, 79 val-dev
        # images (Intel Xeon with AMX): 29/79 images the same, the paired boxes equal to 2.9e-8, agreement 0.976
        # [0.968, 0.985] over 713 detections >= 0.3. Unpacked (before issue 33) it was 79/79. An INT8 verdict holds
        # for the kernels it was measured on: tests/test_phone.py emulates the phone's own.
        from nanodet_deploy.evaluate import bootstrap_counts
        from nanodet_deploy.parity import agreement_with_interval

        value, interval, total = agreement_with_interval(toolkit, mine, bootstrap_counts(len(IMAGES)))
        report(request, f"INT8 app vs toolkit: agreement {value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}] over "
                        f"{total} detections")
        if extra_options() and value < 0.95:  # the app's ncnn on another ISA's kernels (NANODET_NCNN_CMAKE_OPTIONS)
            pytest.xfail(f"ncnn's INT8 kernels for another ISA: agreement {value:.3f}")
        assert value >= 0.95, figures["differing"]
        return
    # bit-identical input tensors into the same ncnn version and kernels: the same detections on every image
    assert figures["same_detections"] == len(IMAGES), figures["differing"]


def test_the_app_says_what_is_wrong_with_its_assets(app, bitmaps, fp32_export, tmp_path):
    """What MainActivity shows on screen instead of crashing: the message of ModelManifest.Invalid or of
    NanoDetNative.lastError(), from the app's own Kotlin and JNI code."""
    assets = app_assets(fp32_export, tmp_path)
    manifest = json.loads((assets / "nanodet.json").read_text())

    def message(edit) -> str:
        broken = tmp_path / "broken"
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(assets, broken)
        edit(broken)
        result = app(broken, bitmaps)
        assert result.returncode == 3, result.stderr
        return result.stderr.strip()

    assert "no nanodet.json in the app's assets" in message(lambda d: (d / "nanodet.json").unlink())
    assert message(lambda d: (d / "nanodet.json").write_text("{ not json")).startswith("error: nanodet.json: ")
    assert "a onnx export, not ncnn" in message(
        lambda d: (d / "nanodet.json").write_text(json.dumps({**manifest, "backend": "onnx"})))
    assert "precision 'weight-int8'" in message(
        lambda d: (d / "nanodet.json").write_text(json.dumps({**manifest, "precision": "weight-int8"})))
    assert "No value for input_width" in message(
        lambda d: (d / "nanodet.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "input_width"})))
    assert "std values must be positive" in message(
        lambda d: (d / "nanodet.json").write_text(json.dumps({**manifest, "std": [0, 1, 1]})))
    assert "missing model files in assets: model.param, model.bin" in message(lambda d: (d / "model.bin").unlink())
    assert "fast_fp16 'sometimes' is not one of" in message(
        lambda d: (d / "nanodet.json").write_text(json.dumps({**manifest, "fast_fp16": "sometimes"})))

    def resize(size):
        def edit(folder):
            data = (folder / "model.bin").read_bytes()
            (folder / "model.bin").write_bytes(data[:size] if size < len(data) else data + bytes(size - len(data)))
        return edit
    # ncnn reads the .bin through a bounded reader: never past its end, and a longer file is refused too
    size = (assets / "model.bin").stat().st_size
    for wrong in (size // 2, size - 4, size + 4):
        assert f"model.param: ncnn could not read the .bin ({wrong} bytes" in message(resize(wrong))
