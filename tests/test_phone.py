"""The phone's own arithmetic: ncnn exports through the Android app's detector on ncnn's ARM64 kernels, emulated.

`nanodet-deploy verify EXPORT --arch arm64` cross-compiles ncnn (the pinned sdist) and the app's detector core for
aarch64 (once, into the cache) and runs them under qemu-aarch64 per CPU model in each mode the app offers. Here:
the two most common CPU models (cortex-a53: ARMv8.0; cortex-a76: ARMv8.2 fp16 arithmetic and dot product), the
416 FP32 and INT8 exports of the suite, fast fp16 off and on, on four val-dev images (81 PyTorch detections >= 0.3:
the INT8 agreement floor needs 20). The whole table (three CPU models, every mode, 279 images) is
benchmarks/phone_arm64.py's, in the README.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nanodet_deploy.manifest import read_manifest
from nanodet_deploy.native.ncnn_build import ARM64_TOOLS, missing_tools
from nanodet_deploy.phone import program

from .helpers import CALIB_IMAGES, VAL_IMAGES, error_lines, export_cli, report, run_cli, weights

# the val-dev images with 34, 25 and 22 official detections >= 0.3, and the smallest file
IMAGE_NAMES = ("000000073326.jpg", "000000183709.jpg", "000000128598.jpg")
CPUS = "cortex-a53,cortex-a76"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="qemu-user emulation of aarch64 Linux programs")


@pytest.fixture(scope="module")
def phone_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("phone-images")
    for name in IMAGE_NAMES:
        shutil.copy(VAL_IMAGES / name, folder / name)
    emptiest = min(sorted(VAL_IMAGES.glob("*.jpg")), key=lambda p: p.stat().st_size)
    shutil.copy(emptiest, folder / emptiest.name)
    return folder


@pytest.fixture(scope="module")
def arm64_program(request) -> Path:
    missing = missing_tools("arm64")
    if missing:
        pytest.fail(f"the emulated phone needs {', '.join(missing)} (apt install; .ci/system-packages)")
    import time

    start = time.monotonic()
    path = program()
    report(request, f"aarch64 ncnn + detector core: {time.monotonic() - start:.0f} s (0 when cached)")
    return path


def check_phone(folder: Path, request) -> dict[tuple[str, str], dict]:
    """parity.json's phone entries of ``folder`` (printed), after the checks every run must pass: both CPU models
    in both app modes, the app's default mode within the gate's budgets, the app's decoding the toolkit's."""
    phone = json.loads((folder / "parity.json").read_text())["phone"]
    for p in phone:
        versus = p["versus_export"]
        report(request, f"{p['cpu']:10} {p['mode']:17} same as x86 {p['same_as_export']}/{p['images']}, agreement "
                        f"vs x86 {versus['agreement']:.3f}, scores max-abs vs x86 {versus['score_max_abs']:.2e}, "
                        f"agreement vs PyTorch {p['gate']['agreement']:.3f}, passed {p['passed']}")
    precision = phone[0]["mode"]
    assert [(p["cpu"], p["mode"]) for p in phone] == [
        (cpu, mode) for cpu in CPUS.split(",") for mode in (precision, precision + " + fast fp16")]
    page = (folder / "report.html").read_text()
    assert all(f'data-phone="{p["cpu"]} {p["mode"]}"' in page for p in phone)
    for p in phone:
        # the app's own decoding of the phone's output is the toolkit's, to the bit (parity.SAME_CODE)
        assert p["app_decodes_as_toolkit"] == p["images"] == 4
        if p["mode"] == precision:  # the app's default mode: the gate's budgets hold
            assert p["passed"] and p["gate"]["passed"], p
            if precision == "fp32":  # this machine's detections on every image (measured max |Δscore| 8.9e-7)
                assert p["same_as_export"] == 4, p
                assert p["versus_export"]["score_max_abs"] < 1e-5
            else:
                # INT8: the ARM integer kernels agree to the bit, and with x86 within what the float steps between
                # int8 layers allow. Since issue 33 x86 runs our INT8 exports with ncnn's packed kernels (their
                # depthwise convs are float), which round those steps differently: measured at 320 on the 79 val-dev
                # images (benchmarks/phone_arm64.py) the same detections on 25 (unpacked before: 76), agreement vs
                # x86 0.981 [0.967, 0.994] (0.998), max |Δscore| 0.056 (0.027); the phone's agreement with PyTorch
                # 0.890 (0.859). Here, at 416 on four images, one box of 28 differs: 0.964.
                assert p["same_bits_as_first_cpu"] == 4, p
                assert p["versus_export"]["agreement"] >= 0.92 and p["versus_export"]["score_max_abs"] <= 0.1, p
    return {(p["cpu"], p["mode"]): p for p in phone}


def test_an_fp32_export_gated_on_the_phone(arm64_program, phone_images, tmp_path, request):
    """`export --to ncnn --arch arm64`: the phone is part of the gate, and the Fast fp16 verdict goes into the
    manifest. NEON fp32 gives this machine's detections on both CPU models. Fast fp16: on cortex-a53 (no fp16
    arithmetic) ncnn runs fp32, the same boxes; on cortex-a76 fp16 arithmetic moves scores (measured on these
    images: max |Δscore| 0.023 against x86, agreement with PyTorch 0.976 < the FP16 budget 0.98): forbidden."""
    out = tmp_path / "m416-fp32"
    result = export_cli(out, "ncnn", "--checkpoint", weights(416), "--verify-images", phone_images, "--arch", "arm64",
                        "--cpu", CPUS, "--threads", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    phone = check_phone(out, request)
    assert phone[("cortex-a53", "fp32 + fast fp16")]["same_as_export"] == 4
    assert phone[("cortex-a53", "fp32 + fast fp16")]["passed"]
    fast = phone[("cortex-a76", "fp32 + fast fp16")]
    assert fast["gate"]["runtime_precision"] == "fp16"  # held to the FP16 budgets
    assert fast["versus_export"]["score_max_abs"] > 1e-3, fast  # it really ran fp16 arithmetic
    manifest = read_manifest(out)
    assert (manifest.fast_fp16, fast["passed"]) == ("forbidden", False), manifest.fast_fp16_note
    assert manifest.fast_fp16_note == "cortex-a76, 4 images: agreement 0.9759 (budget >= 0.98)"
    assert "the app's Fast fp16 switch for this export: forbidden" in result.stdout


def test_verify_an_int8_export_on_the_phone(built, arm64_program, phone_images, tmp_path, request):
    """`verify --arch arm64` on the suite's INT8 export: ARM's integer kernels (Winograd on cortex-a53, sdot on
    cortex-a76) agree to the bit, and with this machine's within the measured cross-ISA tolerance; the gate's INT8
    floors hold against PyTorch."""
    export = built("ncnn", 416, "--int8", "--calib", CALIB_IMAGES)[0]
    folder = tmp_path / export.name
    shutil.copytree(export, folder)  # verify writes parity.json and report.html: not into the shared export
    result = run_cli("verify", folder, "--images", phone_images, "--arch", "arm64", "--cpu", CPUS, "--threads", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    phone = check_phone(folder, request)
    # enough PyTorch detections for the INT8 agreement floor to be checked, not skipped
    assert all(p["gate"]["reference_detections"] >= 20 for p in phone.values())


def test_arch_arm64_without_the_tools_is_one_line(built, tmp_path):
    """No qemu or cross compiler on PATH: one line naming the apt packages, exit 2, before any work."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cmake",):
        os.symlink(shutil.which(tool), bin_dir / tool)
    result = run_cli("verify", built("ncnn", 416)[0], "--arch", "arm64", env={"PATH": str(bin_dir)})
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "g++-aarch64-linux-gnu" in lines[0] and "qemu-user" in lines[0], lines
    assert "apt install" in lines[0]
    assert set(ARM64_TOOLS.values()) >= {"qemu-user", "g++-aarch64-linux-gnu"}


def test_arch_arm64_is_for_ncnn_exports_and_known_cpus(tmp_path, built):
    result = export_cli(tmp_path / "onnx", "onnxruntime", "--checkpoint", weights(320), "--arch", "arm64")
    assert result.returncode == 2 and error_lines(result) == [
        "error: --arch arm64 needs --to ncnn (the Android app runs ncnn), not --to onnxruntime"], result.stderr
    assert not (tmp_path / "onnx").exists()
    result = run_cli("verify", built("ncnn", 416)[0], "--arch", "arm64", "--cpu", "cortex-a99")
    assert result.returncode == 2 and len(error_lines(result)) == 1 and "cortex-a99" in result.stderr
    result = run_cli("verify", built("ncnn", 416)[0], "--arch", "riscv")
    assert result.returncode == 2 and "--arch must be host or arm64" in result.stderr
    result = run_cli("verify", built("ncnn", 416)[0], "--cpu", "max")
    assert result.returncode == 2 and "--cpu needs --arch arm64" in result.stderr


def qemu_children(parent: int) -> list[int]:
    """Processes started by ``parent`` that run qemu-aarch64."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(parent) and fields.get("Name", "").startswith("qemu-aarch64"):
            found.append(int(status.parent.name))
    return found


def test_sigterm_ends_the_emulated_phones(built, arm64_program, tmp_path):
    """SIGTERM while the phones compute (a CI timeout): exit 143 at once, every qemu process ended, the export's
    parity.json untouched."""
    from .test_untrusted import alive, wait_for

    folder = tmp_path / "m416-int8"
    shutil.copytree(built("ncnn", 416, "--int8", "--calib", CALIB_IMAGES)[0], folder)
    before = (folder / "parity.json").read_bytes()
    process = subprocess.Popen([sys.executable, "-m", "nanodet_deploy", "verify", str(folder), "--images",
                                str(VAL_IMAGES), "--arch", "arm64", "--cpu", CPUS], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(qemu_children(process.pid)) == 4)  # 2 CPU models x 2 modes, after the x86 gate
    phones = qemu_children(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 143, process.stderr.read()
    for pid in phones:
        wait_for(lambda: not alive(pid), 10)
    assert (folder / "parity.json").read_bytes() == before


def test_the_fast_fp16_verdict_needs_real_images():
    """What `export --arch arm64` writes into nanodet.json: forbidden when the Fast fp16 mode is over budget,
    verified only when it kept the budgets on real images (noise vouches for no detection)."""
    from nanodet_deploy.parity import ParityReport
    from nanodet_deploy.phone import PhoneReport, fast_fp16_verdict

    def phone(mode: str, inputs: str, agreement_passed: bool) -> PhoneReport:
        gate = ParityReport(artifact="x", backend="ncnn", precision="fp32", runtime_precision="fp16", inputs=inputs,
                            images=4, agreement=0.97)
        gate.checks = [{"metric": "agreement", "budget": ">= 0.98", "value": 0.97, "passed": agreement_passed}]
        gate.passed = agreement_passed
        return PhoneReport("cortex-a76", mode, mode.endswith("fast fp16"), 4, gate, gate, app_decodes_as_toolkit=4)

    assert fast_fp16_verdict([phone("fp32", "images", True), phone("fp32 + fast fp16", "images", False)]) == \
        ("forbidden", "cortex-a76, 4 images: agreement 0.97 (budget >= 0.98)")
    assert fast_fp16_verdict([phone("fp32 + fast fp16", "images", True)])[0] == "verified"
    assert fast_fp16_verdict([phone("fp32 + fast fp16", "synthetic", True)])[0] == "allowed"
    assert fast_fp16_verdict([phone("fp32", "images", True)]) == ("allowed", "")
