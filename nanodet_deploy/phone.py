"""The phone's own arithmetic, verified: an ncnn export through the app's detector on ncnn's ARM64 kernels.

The app's detector core (android_demo/core: the app's preprocess -> ncnn -> postprocess, with the app's precision
switches) is cross-compiled with ncnn for aarch64 (native/ncnn_build.py) and run under ``qemu-aarch64 -cpu MODEL``.
qemu reports each model's features through ``getauxval(AT_HWCAP)``, so ncnn's run-time dispatch picks the kernels
it picks on such a phone: NEON fp32 everywhere, ARMv8.2 fp16 arithmetic and ``sdot`` INT8 from cortex-a76 on,
i8mm/bf16/SVE on ``max``. Emulation is exact (fp16 included) and slow: its timings mean nothing.

Each image goes once through PyTorch, once through the export on this machine (``infer --export``: the output the
parity gate verified) and once per CPU model x app mode through the emulated phone; per combination the gate's
figures against PyTorch (its budgets decide), the same against this machine's output, how many images give the
same detections as this machine (``parity.SAME_LIBRARY``), and that the app's own decoding of the phone's output
equals the toolkit's (``parity.SAME_CODE``).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import ArtifactError, UsageError
from .parity import (SAME_CODE, SAME_LIBRARY, Budgets, Comparison, ParityReport, Tolerance, same_detections)
from .processing import Detections, ProcessingConfig, postprocess, preprocess
from .targets import APP_BACKEND

# qemu CPU model -> what it stands for
CPU_MODELS = {
    "cortex-a53": "ARMv8.0: NEON fp32; no fp16 arithmetic, no dot product (low-end phones)",
    "cortex-a76": "ARMv8.2: fp16 arithmetic, sdot INT8 (most phones since 2019)",
    "max": "every feature qemu has: + i8mm, bf16, SVE (the newest cores)",
}
DEFAULT_CPUS = ("cortex-a53", "cortex-a76")
APT_HINT = "sudo apt install {packages}"


FAST_SUFFIX = " + fast fp16"


@dataclass(frozen=True)
class Mode:
    """One of the app's precision modes: the export's precision, with or without the "Fast fp16" switch."""

    precision: str
    fast_fp16: bool = False

    @property
    def name(self) -> str:
        return self.precision + (FAST_SUFFIX if self.fast_fp16 else "")


def app_modes(precision: str) -> list[Mode]:
    """The modes the app offers an export of ``precision``: as verified, and with the "Fast fp16" switch."""
    return [Mode(precision), Mode(precision, True)]


def config_text(processing: ProcessingConfig) -> str:
    """What the app passes to its core from nanodet.json (MainActivity reads the same keys), as core_cli reads it."""
    return "\n".join([f"input_size {processing.input_size[0]} {processing.input_size[1]}",
                      f"num_classes {processing.num_classes}", f"reg_max {processing.reg_max}",
                      "strides " + " ".join(map(str, processing.strides)),
                      "mean " + " ".join(map(repr, processing.mean)), "std " + " ".join(map(repr, processing.std)),
                      f"keep_ratio {int(processing.keep_ratio)}", f"score_thr {processing.score_thr!r}",
                      f"iou_thr {processing.iou_thr!r}", f"max_dets {processing.max_dets}"]) + "\n"


def check_tools() -> None:
    from .native.ncnn_build import missing_tools

    missing = missing_tools("arm64")
    if missing:
        raise UsageError(f"--arch arm64 needs {', '.join(missing)} (cross compiler, emulator): "
                         + APT_HINT.format(packages=" ".join(missing)))


def check_cpus(cpus) -> tuple[str, ...]:
    cpus = tuple(cpus)
    unknown = [cpu for cpu in cpus if cpu not in CPU_MODELS]
    if unknown or not cpus:
        raise UsageError(f"unknown CPU model {', '.join(unknown) or '(none)'}: one or more of "
                         f"{', '.join(CPU_MODELS)}")
    return cpus


def check_ready(cpus) -> None:
    """Before any work: known CPU models, and the cross compiler and qemu present (one line naming the packages)."""
    check_cpus(cpus)
    check_tools()


def program(progress=None) -> Path:
    """The aarch64 build of the core's program (built once into the user cache)."""
    from .native.ncnn_build import build_core_cli

    check_tools()
    return build_core_cli("arm64", progress=progress)[0]


def ppm(image: np.ndarray) -> bytes:
    """A BGR8 image as a binary PPM (RGB), what core_cli's detect mode reads."""
    height, width = image.shape[:2]
    return f"P6\n{width} {height}\n255\n".encode() + np.ascontiguousarray(image[:, :, ::-1]).tobytes()


class EmulatedPhone:
    """The app's detector for one export on one emulated CPU model in one mode: a running program, fed one image
    at a time (``send`` then ``receive``, so several phones compute at once)."""

    def __init__(self, program_path: Path, export_dir: Path, manifest, cpu: str, mode: Mode, threads: int = 1):
        self.cpu, self.mode = cpu, mode
        self.processing = manifest.processing_config()
        self.raw_shape = (self.processing.num_points, self.processing.output_channels)
        command = ["qemu-aarch64", "-cpu", cpu, str(program_path), "detect",
                   str(Path(export_dir) / manifest.files["model"]), str(Path(export_dir) / manifest.files["weights"]),
                   mode.precision, str(int(mode.fast_fp16)), str(threads), "1"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self._writer = None
        self._write(config_text(self.processing).encode() + b"end\n")

    def _write(self, data: bytes) -> None:
        # a thread, so a program that stops reading (a failure) cannot block us: receive() reports it
        if self._writer:
            self._writer.join()

        def write():
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        self._writer = threading.Thread(target=write, daemon=True)
        self._writer.start()

    def send(self, image: np.ndarray) -> None:
        self._write(ppm(image))

    def receive(self, image_size: tuple[int, int]) -> tuple[Detections, np.ndarray]:
        """(the app's detections, the network's raw output) of the image sent last."""
        line = self.process.stdout.readline()
        size = int(np.prod(self.raw_shape)) * 4
        raw = self.process.stdout.read(size) if line else b""
        if not line or len(raw) != size:
            self.close()
            message = self.process.stderr.read().decode(errors="replace").strip().splitlines()
            raise ArtifactError(f"the emulated {self.cpu} ({self.mode.name}) stopped: "
                                f"{message[-1] if message else 'no output'}")
        result = json.loads(line)
        if (result["width"], result["height"]) != tuple(image_size):
            raise ArtifactError(f"the emulated {self.cpu} answered for a {result['width']}x{result['height']} image")
        return (Detections.from_list(result["detections"], image_size),
                np.frombuffer(raw, "<f4").reshape(self.raw_shape))

    def close(self, kill: bool = False) -> None:
        """End the program: at the end of its input, or at once with ``kill`` (Ctrl-C, a failure elsewhere)."""
        if kill:
            self.process.kill()
        if self._writer:
            self._writer.join(timeout=1)
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class PhoneReport:
    """One CPU model x mode: the gate's figures against PyTorch (``gate``, budgets applied), the same figures
    against this machine's verified output (``versus_export``), and two counts of images."""

    cpu: str
    mode: str         # Mode.name: what the app's switches say
    fast_fp16: bool   # the user's opt-in "Fast fp16" switch is on (Mode.fast_fp16)
    images: int
    gate: ParityReport
    versus_export: ParityReport
    same_as_export: int = 0        # images whose detections are the export's on this machine (SAME_LIBRARY)
    app_decodes_as_toolkit: int = 0  # images where the app's decoding == processing.postprocess (SAME_CODE)
    same_tolerance: dict = field(default_factory=lambda: asdict(SAME_LIBRARY))
    # images whose raw output is bit-identical to the first CPU model's in the same mode (which kernels agree)
    same_bits_as_first_cpu: int = 0

    @property
    def passed(self) -> bool:
        return self.gate.passed and self.app_decodes_as_toolkit == self.images

    @property
    def required(self) -> bool:
        """The app's default mode (what it runs unless the user flips "Fast fp16"): a failure here fails the
        phone's gate; the fast fp16 modes decide the manifest's ``fast_fp16`` (``fast_fp16_verdict``)."""
        return not self.fast_fp16

    def to_dict(self) -> dict:
        return {"cpu": self.cpu, "mode": self.mode, "fast_fp16": self.fast_fp16, "images": self.images,
                "passed": self.passed, "required": self.required,
                "same_as_export": self.same_as_export, "app_decodes_as_toolkit": self.app_decodes_as_toolkit,
                "same_bits_as_first_cpu": self.same_bits_as_first_cpu,
                "same_tolerance": self.same_tolerance, "gate": self.gate.to_dict(),
                "versus_export": self.versus_export.to_dict()}


def fast_fp16_verdict(reports: list[PhoneReport]) -> tuple[str, str]:
    """(the manifest's ``fast_fp16``, its note) from the emulated phone: "forbidden" when the app's "Fast fp16"
    mode is over the gate's budgets on a CPU model, "verified" when it kept them on every one measured."""
    fast = [r for r in reports if not r.required]
    failed = [r for r in fast if not r.passed]
    if failed:
        r = failed[0]
        why = "; ".join(f"{c['metric']} {c['value']:.4g} (budget {c['budget']})" for c in r.gate.checks
                        if c["passed"] is False and isinstance(c["value"], (int, float))) or "over budget"
        return "forbidden", f"{r.cpu}, {r.images} images: {why}"
    if fast and all(r.gate.inputs != "synthetic" for r in fast):
        return "verified", f"within the gate's budgets on {', '.join(sorted({r.cpu for r in fast}))}, " \
                           f"{fast[0].images} images"
    if fast:  # noise images vouch for no detection: the agreement budget was not checked
        return "allowed", "not verified: the gate ran on synthetic inputs (pass --verify-images)"
    return "allowed", ""


def compare_on_phone(export_dir: str | Path, manifest, reference, images, cpus=DEFAULT_CPUS, modes=None,
                     coco_set=None, budgets: Budgets | None = None, threads: int | None = None, progress=None,
                     detections: bool = True, same: Tolerance = SAME_LIBRARY) -> list[PhoneReport]:
    """Every image of ``images`` (BGR arrays or paths) through PyTorch (``reference``), the export on this machine,
    and the app on each emulated CPU model of ``cpus`` in each of ``modes`` (default: every mode the app offers
    this export). ``threads``: of the export here and of each emulated phone (default: one per core)."""
    from .images import read_image
    from .runtimes import open_export

    if manifest.backend != APP_BACKEND:
        raise UsageError(f"{export_dir}: a {manifest.backend} export; the phone (the Android app) runs ncnn exports")
    cpus = check_cpus(cpus)
    modes = list(modes or app_modes(manifest.precision))
    path = program(progress)
    processing = manifest.processing_config()
    verified = open_export(export_dir, manifest, threads=threads)
    combos = [(cpu, mode) for cpu in cpus for mode in modes]
    gates = {c: Comparison(processing, "ncnn (emulated arm64)", manifest.precision) for c in combos}
    versus = {c: Comparison(processing, "ncnn (emulated arm64)", manifest.precision) for c in combos}
    same_count = dict.fromkeys(combos, 0)
    decoded_count = dict.fromkeys(combos, 0)
    same_bits = dict.fromkeys(combos, 0)
    images = list(images)
    advance = progress(f"phone {', '.join(cpus)} x {len(modes)} modes", len(images)) if progress else None
    phones = {}
    failed = True  # until every image is through: an exception (Ctrl-C included) kills the phones at once
    try:
        for combo in combos:
            # ``threads`` (default: every core) in each phone as on this machine: ncnn's raw output is the same to
            # the bit with 1, 2 and 4 threads (measured at 416 for every precision and mode on cortex-a53 and -a76),
            # and the slowest phone (software fp16 under qemu) then uses the cores the others are done with: the
            # suite's 416 FP32 export on 4 images, 2 CPU models x 2 modes, 97 s -> 81 s on 2 cores
            phones[combo] = EmulatedPhone(path, Path(export_dir), manifest, *combo,
                                          threads=threads or os.cpu_count() or 1)
        for image in images:
            source = None if isinstance(image, np.ndarray) else str(image)
            image = read_image(image) if not isinstance(image, np.ndarray) else image
            size = (image.shape[1], image.shape[0])
            for phone in phones.values():
                phone.send(image)  # the phones compute while this machine does
            tensor, matrix = preprocess(image, processing)
            ref_raw, export_raw = reference.run(tensor)[0], verified.run(tensor)[0]
            export_dets = postprocess(export_raw, matrix, size, processing)
            raws = {}
            for combo, phone in phones.items():
                app_dets, raw = raws[combo] = phone.receive(size)
                gates[combo].add(ref_raw, raw, matrix, size, source, art_dets=app_dets)
                versus[combo].add(export_raw, raw, matrix, size, source, art_dets=app_dets)
                same_count[combo] += same_detections(export_dets, app_dets, same).same
                decoded_count[combo] += same_detections(postprocess(raw, matrix, size, processing), app_dets,
                                                        SAME_CODE).same
                first = raws[(cpus[0], combo[1])][1]
                same_bits[combo] += np.array_equal(raw.view(np.uint32), first.view(np.uint32))
            if advance:
                advance()
        failed = False
    finally:
        for phone in phones.values():
            phone.close(kill=failed)
    reports = []
    for combo in combos:
        cpu, mode = combo
        gate = gates[combo].report(coco_set, detections)
        gate.artifact, gate.precision = str(export_dir), manifest.precision
        gate.runtime_precision = "fp16" if mode.fast_fp16 else mode.precision
        gate.inputs = "images" if detections else "synthetic"
        reports.append(PhoneReport(cpu, mode.name, mode.fast_fp16, len(images), gate.apply(budgets or Budgets()),
                                   versus[combo].report(None, detections), same_count[combo],
                                   decoded_count[combo], asdict(same), same_bits[combo]))
    return reports
