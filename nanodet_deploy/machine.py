"""The machine a measurement was taken on: CPU model, instruction sets, cores, OS, package versions and the warp
kernels preprocessing runs — one dict (``machine()``) and one line (``machine_line``) for tables, reports and the
suite's header. Timings are only ever compared within one machine and one run."""

from __future__ import annotations

from pathlib import Path

# the instruction sets a CPU timing depends on, as /proc/cpuinfo names them -> how we print them. INT8 kernels
# gain from an int8 dot product (VNNI); without it INT8 is often no faster than FP32.
INSTRUCTION_SETS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI",
                    "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX512-BF16", "avx512_fp16": "AVX512-FP16",
                    "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8", "asimddp": "NEON-dotprod", "i8mm": "I8MM"}


def machine() -> dict:
    """The CPU's model name and instruction sets (from /proc/cpuinfo where there is one), cores, the OS and the
    versions of every registered backend's packages and OpenCV (read from their metadata: nothing is imported)."""
    import os
    import platform
    from importlib import metadata

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in ("", platform.processor() or platform.machine()):
                cpu = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    from .targets import BACKENDS

    versions = {}
    for package in dict.fromkeys([p for row in BACKENDS.values() for p in row.packages] + ["opencv-python-headless"]):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    from . import native

    return {"cpu": cpu, "cores": os.cpu_count(), "isa": [name for flag, name in INSTRUCTION_SETS.items()
                                                          if flag in flags],
            "system": platform.platform(), "python": platform.python_version(), "versions": versions,
            "preprocessing": native.warp_kernels()}


def machine_line(info: dict) -> str:
    """One line naming the machine a timing was taken on: CPU, cores, instruction sets, backend versions, and
    which warp kernels ran the preprocessing."""
    isa = info.get("isa") or []
    missing = [name for name in ("AVX512-VNNI", "AVX512-BF16", "AMX-INT8") if name not in isa]
    sets = " ".join(isa) or "no AVX2"
    if missing and "AVX2" in isa:
        sets += f" (no {', '.join(missing)})"
    versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items())
    preprocessing = f" · preprocessing {info['preprocessing']}" if info.get("preprocessing") else ""
    return f"{info['cpu']} · {info['cores']} cores · {sets}" + (f" · {versions}" if versions else "") + preprocessing


def int8_hardware_note(info: dict) -> str:
    """Why INT8 may not beat FP32 here, from the instruction sets."""
    isa = set(info.get("isa") or [])
    if not isa & {"AVX512-VNNI", "AVX-VNNI", "AMX-INT8", "NEON-dotprod", "I8MM"}:
        return "this CPU has no int8 dot product (VNNI): INT8 kernels emulate it and gain little or nothing"
    return "the CPU has VNNI"
