"""Untrusted inputs, part 2: export folders and manifests that point outside themselves or lie, damaged model
files on every backend, NaN weights, broken calibrations, image bombs and hostile file names, telemetry, SIGTERM,
mount points and full disks. Each case failed on the code before it was covered (see the README, "Bad input")."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nanodet_deploy import Detector
from nanodet_deploy.errors import NanodetDeployError
from nanodet_deploy.manifest import MANIFEST_NAME, ManifestError, read_manifest, write_manifest
from nanodet_deploy.model import load
from nanodet_deploy.parity import Budgets, compare
from nanodet_deploy.processing import MAX_INPUT_SIDE
from nanodet_deploy.runtimes.torch import TorchRuntime

from nanodet_deploy.targets import TARGETS

from .helpers import CALIB_IMAGES, VAL_IMAGES, Lazy, copy_export, error_lines, run_cli, some_val_images, weights

GOOD = VAL_IMAGES / "000000000139.jpg"
ROOT = os.geteuid() == 0


def weight_file(folder: Path) -> str:
    """The role (manifest ``files`` key) of an export's biggest file: the one that holds the weights."""
    files = read_manifest(folder).files
    return max(files, key=lambda role: (folder / files[role]).stat().st_size)


def one_line(result, code=2) -> str:
    """The command failed with ``code`` and said exactly one line, no traceback."""
    lines = error_lines(result)
    assert result.returncode == code and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def exports(built):
    """target -> its gated FP32 export at 416 (the session's, the one test_backends.py checks, shared with other
    modules: tests copy before they change one), made on first use."""
    return Lazy(lambda target: built(target, 416)[0])


def edit_manifest(folder: Path, change) -> None:
    data = json.loads((folder / MANIFEST_NAME).read_text())
    change(data)
    (folder / MANIFEST_NAME).write_text(json.dumps(data))


def resign(folder: Path) -> None:
    """Record the folder's current files in its manifest, as someone who changes them consistently would."""
    write_manifest(folder, read_manifest(folder, check_files=False))


# ---------------------------------------------------------------- files outside the export folder

@pytest.mark.parametrize("name", ["../outside.onnx", "/tmp/outside.onnx", "sub/model.onnx", "..", "link"])
def test_file_names_that_leave_the_folder_are_refused(exports, tmp_path, name):
    folder = copy_export(exports["onnxruntime"], tmp_path / "export")
    outside = tmp_path / "outside.onnx"
    shutil.copy(folder / "model.onnx", outside)
    if name == "link":
        (folder / "link").symlink_to(outside)
    edit_manifest(folder, lambda m: (m["files"].update(model=name),
                                     m.update(checksums={name: m["checksums"]["model.onnx"]})))
    line = one_line(run_cli("infer", GOOD, "--export", folder))
    assert str(folder) in line and ("not a plain file name" in line or "outside the export folder" in line), line


def snapshot(root: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def test_no_command_touches_a_file_outside_the_folders_named(exports, tmp_path):
    """infer, verify, android and export over manifests that name files outside their folder (relative,
    absolute, through a symlink): the canary files outside are never read into a model, moved, copied or
    deleted, and nothing is written outside the folders named."""
    canary = tmp_path / "canary"
    canary.mkdir()
    for name in ("model.param", "model.bin"):
        shutil.copy(exports["ncnn"] / name, canary / name)
    (canary / "secret.txt").write_text("do not touch")
    before = snapshot(canary)

    by_path = copy_export(exports["ncnn"], tmp_path / "by-path")
    edit_manifest(by_path, lambda m: m["files"].update(model="../canary/model.param",
                                                       weights=str(canary / "model.bin"), table="../canary/secret.txt"))
    by_link = copy_export(exports["ncnn"], tmp_path / "by-link")
    for name in ("model.param", "model.bin"):
        (by_link / name).unlink()
        (by_link / name).symlink_to(canary / name)
    app = tmp_path / "app"
    (app / "app").mkdir(parents=True)
    (app / "app" / "build.gradle.kts").write_text("// the demo app's marker\n")

    for folder in (by_path, by_link):
        assert one_line(run_cli("infer", GOOD, "--export", folder)).startswith(f"error: {folder}")
        assert one_line(run_cli("verify", folder, "--images", VAL_IMAGES)).startswith(f"error: {folder}")
        assert one_line(run_cli("android", folder, "--app", app)).startswith(f"error: {folder}")
        assert not (folder / "rejected").exists()
    # an export into a folder whose old manifest lists outside files deletes none of them; its symlinks are
    # replaced or removed, never followed
    for folder in (by_path, by_link):
        result = run_cli("export", "--to", "ncnn", "--checkpoint", weights(320), "--out", folder)
        assert result.returncode == 0, result.stderr
        assert not any(p.is_symlink() for p in folder.iterdir())
        read_manifest(folder)
    assert snapshot(canary) == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "app", "by-link", "by-path", "canary"]
    assert [p.relative_to(app) for p in app.rglob("*")] == [Path("app"), Path("app/build.gradle.kts")]


def test_onnx_external_data_outside_the_folder_is_one_line(exports, tmp_path):
    import onnx

    folder = copy_export(exports["onnxruntime"], tmp_path / "export")
    model = onnx.load(str(folder / "model.onnx"))
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, location="weights.data",
                    size_threshold=0)
    (folder / "weights.data").replace(tmp_path / "weights.data")
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.data"
    onnx.save_model(model, str(folder / "model.onnx"))
    resign(folder)
    line = one_line(run_cli("infer", GOOD, "--export", folder))
    assert "external file '../weights.data'" in line and "model.onnx" in line


# ---------------------------------------------------------------- artifacts that lie

def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "zeros":  # 64 KiB of zeros in the middle: bit rot, an interrupted copy
        middle = len(data) // 2
        data = data[:middle] + bytes(min(65536, len(data) - middle)) + data[middle + 65536:]
    else:
        data = {"half": data[:len(data) // 2], "64 bytes": data[:64], "empty": b""}[how]
    path.write_bytes(data)


@pytest.mark.parametrize("target", list(TARGETS))
def test_damaged_model_files_are_refused_by_their_checksum(exports, tmp_path, target):
    for how in ("zeros", "half", "64 bytes", "empty"):
        folder = copy_export(exports[target], tmp_path / how.replace(" ", "-"))
        name = read_manifest(folder).files[weight_file(folder)]
        damage(folder / name, how)
        expected = "sha256 differs" if how == "zeros" else "bytes, nanodet.json records"
        with pytest.raises(ManifestError, match=expected):
            Detector.from_export(folder)
        if how == "zeros":
            line = one_line(run_cli("infer", GOOD, "--export", folder))
            assert str(folder / name) in line and "changed or was damaged after export" in line


@pytest.mark.parametrize("target", list(TARGETS))
def test_truncated_files_matching_their_manifest_are_one_line(exports, tmp_path, target):
    """Someone truncated the files and rewrote the checksums: the backend's own failure, as one line."""
    for how in ("half", "64 bytes", "empty"):
        folder = copy_export(exports[target], tmp_path / how.replace(" ", "-"))
        damage(folder / read_manifest(folder).files[weight_file(folder)], how)
        resign(folder)
        with pytest.raises(NanodetDeployError) as error:
            Detector.from_export(folder)
        assert error.value.exit_code == 2 and str(folder) in str(error.value), str(error.value)
    assert str(folder) in one_line(run_cli("infer", GOOD, "--export", folder))


def test_a_model_file_from_another_export_is_refused(exports, built, tmp_path):
    """Same size, other checkpoint: the checksum; an FP16 model under an FP32 manifest, even with the checksums
    rewritten: the precision found in the model."""
    import onnx
    from onnx import numpy_helper

    folder = copy_export(exports["onnxruntime"], tmp_path / "swapped")
    model = onnx.load(str(folder / "model.onnx"))
    size = (folder / "model.onnx").stat().st_size
    for tensor in model.graph.initializer:  # other weights, same shapes: what another checkpoint gives
        if tensor.raw_data:
            values = numpy_helper.to_array(tensor)
            tensor.raw_data = (values * 1.01).astype(values.dtype).tobytes()
    onnx.save(model, str(folder / "model.onnx"))
    assert (folder / "model.onnx").stat().st_size == size
    assert "sha256 differs" in one_line(run_cli("infer", GOOD, "--export", folder))

    # every runtime that reads the precision its model file holds (the session's 416 exports: none made here)
    for target in [n for n, t in TARGETS.items() if "fp16" in t.precisions and t.runtime_class().reads_stored_precision]:
        fp16 = built(target, 416, "--fp16")[0]
        folder = copy_export(built(target, 416)[0], tmp_path / f"{target}-fp32-with-fp16-files")
        for name in read_manifest(folder).files.values():
            shutil.copy(fp16 / name, folder / name)
        resign(folder)
        line = one_line(run_cli("infer", GOOD, "--export", folder))
        assert "holds a fp16 model, nanodet.json says fp32" in line, line


@pytest.mark.parametrize("change, fragment", [
    (lambda m: m.update(strides=[16, 8, 32, 64]), "strides must be 1 to 8 increasing"),
    (lambda m: m.update(std=[float("nan"), 57.12, 58.395]), "std must be 3 finite numbers > 0"),
    (lambda m: m.update(mean=[1e400, 0, 0]), "mean must be 3 finite numbers"),
    (lambda m: m.update(max_dets=-1), "max_dets must be 1 to"),
    (lambda m: m.update(iou_thr=-1), "iou_thr must be in (0, 1]"),
    (lambda m: m.update(score_thr="0.05"), "score_thr must be in [0, 1)"),
    (lambda m: m.update(input_width="320"), "input size '320'x416"),
    (lambda m: m.update(input_width=0), "input size 0x416"),
    (lambda m: m.update(input_height=-32), "input size 416x-32"),
    (lambda m: m.update(input_width=4000, input_height=4000), f"(1 to {MAX_INPUT_SIDE} pixels a side)"),
    (lambda m: m.update(class_names="person"), "class_names must be"),
    (lambda m: m.update(reg_max=[7]), "reg_max must be"),
    (lambda m: m.update(keep_ratio="no"), "keep_ratio must be true or false"),
    (lambda m: m.update(color_order="RGB"), "color_order 'RGB'"),
    (lambda m: m.update(input_format="yuv420"), "input_format must be one of float-nchw, bgr8-nhwc"),
    (lambda m: m.update(files=["model.param"]), "files must name the model file"),
    (lambda m: m.update(precision="int4"), "precision must be one of"),
    (lambda m: m.update(checksums={"model.param": "abc"}), "checksums must map"),
])
def test_manifest_values_are_typed_and_bounded(exports, tmp_path, change, fragment):
    folder = copy_export(exports["ncnn"], tmp_path / "export")
    edit_manifest(folder, change)
    with pytest.raises(ManifestError, match="invalid manifest") as error:
        read_manifest(folder)
    assert fragment in str(error.value)
    if "pixels a side" in fragment:  # refused before ncnn runs the network at 4000x4000
        assert fragment in one_line(run_cli("infer", GOOD, "--export", folder))


def test_huge_and_deeply_nested_manifests_are_refused_unparsed(exports, tmp_path):
    folder = copy_export(exports["onnxruntime"], tmp_path / "export")
    (folder / MANIFEST_NAME).write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    assert "nested more than" in one_line(run_cli("infer", GOOD, "--export", folder))
    with open(folder / MANIFEST_NAME, "wb") as f:  # 250 MB, sparse: refused by its size before it is read
        f.write(b"{")
        f.truncate(250_000_000)
    assert "over the 1 MiB a manifest may have" in one_line(run_cli("infer", GOOD, "--export", folder))


# ---------------------------------------------------------------- the gate

def nan_checkpoint(tmp_path, value=float("nan")) -> Path:
    state = torch.load(weights(320), weights_only=True)
    key = "model.head.gfl_cls.0.weight"
    state["state_dict"][key] = state["state_dict"][key].clone()
    state["state_dict"][key].view(-1)[7] = value
    path = tmp_path / f"nanodet-plus-m_320-{value}.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_checkpoint_with_a_non_finite_weight_is_refused(tmp_path, value):
    path = nan_checkpoint(tmp_path, value)
    for command in (["infer", GOOD], ["export", "--to", "onnxruntime", "--out", tmp_path / "out"]):
        line = one_line(run_cli(*command, "--checkpoint", path, "--model", "nanodet-plus-m_320"))
        assert str(path) in line and "NaN or Inf" in line and "head.gfl_cls.0.weight" in line
    assert not (tmp_path / "out").exists()


def test_the_gate_fails_nan_outputs():
    """An artifact whose outputs hold NaN (here a PyTorch model with one NaN weight, run as the artifact) fails
    every precision's budgets, even where max() would have dropped the NaN."""
    reference = load(weights(320))
    broken = load(weights(320))
    with torch.no_grad():
        broken.module.head.gfl_cls[0].weight.view(-1)[7] = float("nan")
    images = [cv2.imread(str(p)) for p in sorted(VAL_IMAGES.iterdir())[:2]]
    from nanodet_deploy.detector import processing_config

    report = compare(TorchRuntime(reference.module), TorchRuntime(broken.module), processing_config(reference.spec),
                     images)
    assert report.nonfinite_outputs > 0 and report.score_max_abs == float("inf")
    for precision in ("fp32", "fp16", "int8"):
        report.precision = report.runtime_precision = precision
        report.apply(Budgets())
        assert not report.passed and {"metric": "nonfinite_outputs", "budget": "<= 0",
                                      "value": report.nonfinite_outputs, "passed": False,
                                      "note": "the model produced NaN/Inf"} in report.checks


@pytest.mark.parametrize("target", [name for name, target in TARGETS.items() if "int8" in target.precisions])
def test_int8_calibrated_on_one_grey_pixel_cannot_publish(tmp_path, target):
    """Without annotations the label-free INT8 floors decide: with no verify images the export is gated on its
    calibration images (one grey pixel holds nothing to agree on), and `verify` of the same artifact on val-dev
    images rejects it too (agreement or score cosine). One conversion per backend: ExecuTorch's INT8 lowering
    alone takes ~60 s."""
    calib = tmp_path / "calib"
    calib.mkdir()
    cv2.imwrite(str(calib / "grey.png"), np.full((1, 1, 3), 128, np.uint8))
    out = tmp_path / "out"
    # --keep-float none: the floors are the subject, not the float set (saves the ~30 s sensitivity)
    result = run_cli("export", "--to", target, "--checkpoint", weights(320), "--int8", "--calib", calib,
                     "--keep-float", "none", "--out", out, "--threads", "2")
    assert result.returncode == 1 and "rejected" in result.stderr, result.stdout + result.stderr
    assert not (out / MANIFEST_NAME).exists() and (out / "rejected" / MANIFEST_NAME).is_file()

    def checks_in(folder: Path) -> dict:
        return {c["metric"]: c for c in json.loads((folder / "parity.json").read_text())["artifacts"][0]["checks"]}

    checks = {"none": checks_in(out / "rejected")}  # before verify moves the artifact and its report on
    images = some_val_images(tmp_path / "images")  # 8 real images: far more than the floors need to fail
    again = run_cli("verify", out / "rejected", "--images", images, "--threads", "2", "--no-report")
    assert again.returncode == 1 and "rejected" in again.stderr, again.stdout + again.stderr
    checks["val-dev"] = checks_in(out / "rejected" / "rejected")
    assert checks["none"]["agreement"]["passed"] is False and "PyTorch detections" in checks["none"]["agreement"]["note"]
    assert checks["val-dev"]["agreement"]["passed"] is False or checks["val-dev"]["score_cosine"]["passed"] is False


# ---------------------------------------------------------------- images

def png_bomb(path: Path, side: int = 30000) -> None:
    """A real, decodable 1-bit grey PNG of side x side pixels: ~110 KB of file for 900 megapixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(9), b"\x00" * (1 + (side + 7) // 8)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_image_bombs_huge_files_and_hostile_names(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(GOOD, folder / "good.jpg")
    png_bomb(folder / "bomb.png")
    with open(folder / "big.jpg", "wb") as f:  # 64 GiB, sparse
        f.write(GOOD.read_bytes()[:1024])
        f.truncate(64 << 30)
    forged = "bad\nerror: forged.jpg"
    (folder / forged).write_bytes(b"not an image")
    latin1 = os.fsdecode(b"caf\xe9.jpg")  # a file name that is not UTF-8
    shutil.copy(GOOD, folder / latin1)
    result = run_cli("infer", folder, "--checkpoint", weights(320), "--json", tmp_path / "out.json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 4 and lines[-1] == "3 of 5 images failed", lines
    assert any("bomb.png: declares 30000x30000 pixels, over the 150,000,000 pixel limit" in x for x in lines)
    assert any("big.jpg: 65536 MiB, over the 512 MiB image file limit" in x for x in lines)
    assert any("bad\\nerror: forged.jpg: not a decodable image" in x for x in lines), lines
    text = (tmp_path / "out.json").read_bytes().decode("utf-8")  # strict UTF-8, no lone surrogates
    names = [Path(e["image"]).name for e in json.loads(text)]
    assert sorted(names) == ["caf\\xe9.jpg", "good.jpg"]
    json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")
    # the limits are the user's to move
    env = {"NANODET_DEPLOY_MAX_IMAGE_PIXELS": "1000"}
    result = run_cli("infer", folder / "good.jpg", "--checkpoint", weights(320), env=env)
    assert "declares 640x426 pixels, over the 1,000 pixel limit" in error_lines(result)[0]


# ---------------------------------------------------------------- network and home

@pytest.mark.skipif(not ROOT or not shutil.which("unshare"), reason="needs root for a network namespace")
def test_no_network_traffic_and_nothing_under_home(tmp_path):
    """export (all six targets; INT8 through the recipe for ONNX Runtime and through NNCF for OpenVINO), infer
    and bench in a network namespace whose resolver records every query, with a fresh HOME: no query, and HOME
    stays empty. (The recipe's own steps run in ONNX Runtime whatever the target: one recipe export covers them;
    --keep-float none skips its sensitivity pass, which only calls ONNX Runtime again.)"""
    home, log = tmp_path / "home", tmp_path / "dns.log"
    home.mkdir()
    cli = f"{sys.executable} -m nanodet_deploy"
    common = f"--checkpoint {weights(320)} --threads 2"
    script = " && ".join([
        f"{cli} export --to onnxruntime {common} --int8 --calib {CALIB_IMAGES} --calib-images 16 --keep-float none "
        f"--out {tmp_path}/onnx",
        f"{cli} export --to openvino {common} --int8 --calib {CALIB_IMAGES} --calib-images 16 --calib-method nncf "
        f"--out {tmp_path}/ov",
        f"{cli} export --to mnn {common} --out {tmp_path}/mnn",
        f"{cli} export --to ncnn {common} --out {tmp_path}/ncnn",
        f"{cli} export --to executorch {common} --out {tmp_path}/executorch",
        f"{cli} export --to litert {common} --fp16 --out {tmp_path}/litert",  # the FP16 step: ai_edge_quantizer
        *(f"{cli} infer {GOOD} --export {tmp_path}/{name}" for name in ("onnx", "ov", "mnn", "ncnn", "executorch",
                                                                          "litert")),
        f"{cli} bench {common} --backend onnxruntime --precision fp32 --runs 2 --warmup 0 --no-memory "
        f"--export-dir {tmp_path}/bench",
    ])
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    result = subprocess.run(["unshare", "--net", "--mount", sys.executable, Path(__file__).with_name("dns_jail.py"),
                             log, "--", "sh", "-c", script], capture_output=True, text=True, timeout=900,
                            env={**env, "HOME": str(home)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    queries = log.read_text().split()
    assert queries and set(queries) == {"jail-self-test.invalid"}, queries  # the recorder works; nothing else
    assert list(home.rglob("*")) == []


# ---------------------------------------------------------------- signals, mounts, disks

def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def wait_for(condition, seconds=300.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_during_export_leaves_nothing(tmp_path):
    """SIGTERM while pnnx runs (and while the INT8 recipe calibrates): exit 143, no staging or temporary folder,
    no converter process left."""
    tool = tmp_path / "fake-pnnx"
    tool.write_text(f"#!/bin/sh\nsleep 300 &\necho $$ $! > {tmp_path}/pids\nwait\n")
    tool.chmod(0o755)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "NANODET_DEPLOY_PNNX": str(tool), "TMPDIR": str(tmpdir)}
    cli = [sys.executable, "-m", "nanodet_deploy", "export", "--checkpoint", str(weights(320))]

    process = subprocess.Popen([*cli, "--to", "ncnn", "--out", str(tmp_path / "ncnn")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / "pids").is_file() and len((tmp_path / "pids").read_text().split()) == 2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 143, process.stderr.read()
    for pid in map(int, (tmp_path / "pids").read_text().split()):
        wait_for(lambda: not alive(pid), 10)
    assert not (tmp_path / "ncnn").exists() and list(tmpdir.iterdir()) == []

    out = tmp_path / "onnx"
    process = subprocess.Popen([*cli, "--to", "onnxruntime", "--int8", "--calib", str(CALIB_IMAGES), "--out", str(out)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(out.glob(".staging.*/model.fp32.onnx")))  # traced: calibration comes next
    time.sleep(3)  # inside calibrate(): equalizing and the two calibration passes take ~20 s of the export
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 143, process.stderr.read()
    assert not out.exists() and list(tmpdir.iterdir()) == []


@pytest.fixture
def mount(tmp_path):
    """mount(folder, options): a tmpfs at ``folder`` for this test, unmounted afterwards."""
    mounted = []

    def make(folder: Path, options: str):
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")
def test_out_on_its_own_file_system_read_only_or_full(tmp_path, mount):
    """--out as a mount point (docker -v): works; a read-only one is refused before any work; a full one fails
    on one line naming the folder and leaves it empty."""
    mounted = mount(tmp_path / "mnt", "size=64m")
    result = run_cli("export", "--to", "onnxruntime", "--checkpoint", weights(320), "--out", mounted)
    assert result.returncode == 0, result.stderr
    assert read_manifest(mounted).files == {"model": "model.onnx"}

    read_only = mount(tmp_path / "ro", "ro,size=1m")
    line = one_line(run_cli("export", "--to", "onnxruntime", "--checkpoint", weights(320), "--out", read_only))
    assert line == f"error: {read_only}: cannot write an export there (Read-only file system)"

    full = mount(tmp_path / "full", "size=1m")
    line = one_line(run_cli("export", "--to", "onnxruntime", "--checkpoint", weights(320), "--out", full), code=1)
    assert line.startswith(f"error: {full}") and "No space left on device" in line, line
    assert list(full.iterdir()) == []


# ---------------------------------------------------------------- checkpoints

def test_unsafe_load_of_a_ckpt_whose_class_is_not_installed(tmp_path):
    """A Lightning .ckpt whose hyper-parameters hold an object of a module the user does not have."""
    package = tmp_path / "trainer_code"
    package.mkdir()
    (package / "my_trainer_hparams.py").write_text("class Hyper:\n    lr = 0.1\n")
    sys.path.insert(0, str(package))
    try:
        import my_trainer_hparams

        state = torch.load(weights(320), weights_only=True)
        torch.save({"state_dict": state["state_dict"], "hyper_parameters": my_trainer_hparams.Hyper()},
                   tmp_path / "trained.ckpt")
    finally:
        sys.path.remove(str(package))
        sys.modules.pop("my_trainer_hparams", None)
    line = one_line(run_cli("infer", GOOD, "--checkpoint", tmp_path / "trained.ckpt", "--model",
                            "nanodet-plus-m_320", "--unsafe-load"))
    assert "trained.ckpt: cannot unpickle it" in line and "my_trainer_hparams" in line


# ---------------------------------------------------------------- what is checked is what is loaded

def _other_weights(folder: Path, role: str) -> bytes:
    """The bytes of ``folder``'s ``role`` file with other values of the same size (another checkpoint's)."""
    data = bytearray((folder / read_manifest(folder).files[role]).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(b ^ 0x55 for b in data[middle:middle + 4096])
    return bytes(data)


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_file_swapped_after_the_check_is_not_what_loads(exports, tmp_path, target):
    """The runtime loads the descriptor that was hashed (manifest.pinned_files): a file renamed over the checked
    one between the check and the load (at 5c11f11 a fast swap loop ran an unchecked model 4 times in 12) does
    not reach the runtime — it gives the checked model's output, bit for bit."""
    from nanodet_deploy.manifest import pinned_files
    from nanodet_deploy.targets import get_backend

    folder = copy_export(exports[target], tmp_path / "export")
    manifest = read_manifest(folder)
    shape = (1, 3, manifest.input_height, manifest.input_width)
    tensor = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = Detector.from_export(folder, threads=1).runtime.run(tensor)
    role = weight_file(folder)
    other = tmp_path / "other"
    other.write_bytes(_other_weights(folder, role))
    cls = get_backend(manifest.backend).runtime_class()
    with pinned_files(folder, manifest) as files:
        os.replace(other, folder / manifest.files[role])  # swapped after the check, before the load
        loaded = cls.from_export(files, manifest, threads=1)
    assert np.array_equal(loaded.run(tensor), expected)
    with pytest.raises(ManifestError, match="sha256 differs"):  # and the swapped file is refused from now on
        Detector.from_export(folder, threads=1)


def test_a_swap_loop_never_runs_an_unchecked_model(exports, tmp_path):
    """A second thread renames a same-size file with other weights over the model and back, as fast as it can,
    while the export is loaded 30 times: each load either refuses the file (checksum) or runs the checked model;
    never the other one."""
    import threading

    folder = copy_export(exports["onnxruntime"], tmp_path / "export")
    model = folder / "model.onnx"
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    shutil.copy(model, good)
    bad.write_bytes(_other_weights(folder, "model"))
    manifest = read_manifest(folder)
    shape = (1, 3, manifest.input_height, manifest.input_width)
    tensor = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = Detector.from_export(folder, threads=1).runtime.run(tensor)
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            for source in (bad, good):
                os.link(source, tmp_path / "next.onnx")
                os.replace(tmp_path / "next.onnx", model)

    swapper = threading.Thread(target=swap)
    swapper.start()
    outcomes = []
    try:
        for _ in range(30):
            try:
                output = Detector.from_export(folder, threads=1).runtime.run(tensor)
                outcomes.append("checked" if np.array_equal(output, expected) else "UNCHECKED")
            except ManifestError:
                outcomes.append("refused")
    finally:
        stop.set()
        swapper.join()
    assert "UNCHECKED" not in outcomes, outcomes
    assert "checked" in outcomes and "refused" in outcomes, outcomes  # the loop really raced the loads
