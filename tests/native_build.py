"""ncnn's C++ library built on the host from the source the package registry distributes, for the tests of the
Android app's native chain (tests/test_android_native.py).

The ``ncnn`` sdist on PyPI carries ncnn's full C++ sources and CMake build. The version is the one the Python
wheel has (pyproject.toml pins it), so the app's chain on the host runs the same kernels as ``infer --export``.
The build is CPU only (no Vulkan), static, with only the layers an export of ours uses and the ones ncnn
creates inside them, and is cached under ~/.cache/nanodet-deploy (or $NANODET_NATIVE_CACHE): a rerun finds
the installed library and builds nothing. A build that stopped half way is never used: the install goes to a
temporary folder that is renamed when complete.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "android_demo" / "core"


def _cmake_setting(name: str) -> str:
    """A value pinned in android_demo/core/ncnn.cmake: the app and these tests build the same ncnn."""
    match = re.search(rf'set\({name} "([^"]+)"\)', (CORE / "ncnn.cmake").read_text())
    assert match, f"{name} not in ncnn.cmake"
    return match.group(1)


NCNN_VERSION = _cmake_setting("NANODET_NCNN_VERSION")
NCNN_SDIST_URL = _cmake_setting("NANODET_NCNN_URL")
NCNN_SDIST_SHA256 = _cmake_setting("NANODET_NCNN_SHA256")
LAYERS = tuple(line.strip() for line in (CORE / "ncnn_layers.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#"))


def cache_root() -> Path:
    return Path(os.environ.get("NANODET_NATIVE_CACHE", Path.home() / ".cache" / "nanodet-deploy"))


def _all_layers(source: Path) -> list[str]:
    return re.findall(r"ncnn_add_layer\((\w+)", (source / "src" / "CMakeLists.txt").read_text())


def ncnn_source(root: Path) -> Path:
    """The unpacked sdist (downloaded once, SHA-256 checked)."""
    source = root / f"ncnn-{NCNN_VERSION}"
    if (source / "CMakeLists.txt").is_file() and (source / ".complete").is_file():
        return source
    archive = root / f"ncnn-{NCNN_VERSION}.tar.gz"
    if not archive.is_file() or hashlib.sha256(archive.read_bytes()).hexdigest() != NCNN_SDIST_SHA256:
        partial = archive.with_suffix(".part")
        with urllib.request.urlopen(NCNN_SDIST_URL, timeout=120) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        digest = hashlib.sha256(partial.read_bytes()).hexdigest()
        if digest != NCNN_SDIST_SHA256:
            partial.unlink()
            raise RuntimeError(f"{NCNN_SDIST_URL}: SHA-256 {digest}, expected {NCNN_SDIST_SHA256}")
        partial.replace(archive)
    shutil.rmtree(source, ignore_errors=True)
    unpacking = root / f"ncnn-{NCNN_VERSION}.unpacking"
    shutil.rmtree(unpacking, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(unpacking, filter="data")
    (unpacking / f"ncnn-{NCNN_VERSION}" / ".complete").write_text("")
    (unpacking / f"ncnn-{NCNN_VERSION}").replace(source)
    shutil.rmtree(unpacking)
    return source


def _run(command: list, log: Path) -> None:
    with open(log, "a") as out:
        out.write("$ " + " ".join(map(str, command)) + "\n")
        out.flush()
        result = subprocess.run(list(map(str, command)), stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed (exit {result.returncode}); log: {log}\n"
                           + "\n".join(log.read_text().splitlines()[-30:]))


# Extra CMake options for the host build, e.g. "-DNCNN_AVX512=OFF": ncnn's kernels for another ISA than the
# wheel's on this CPU (the AVX2 ones where the wheel runs AVX-512), to see the app-vs-toolkit comparison hold
# across ISAs. Part of the cache key.
EXTRA_OPTIONS_ENV = "NANODET_NCNN_CMAKE_OPTIONS"


def extra_options() -> dict[str, str]:
    options = {}
    for item in os.environ.get(EXTRA_OPTIONS_ENV, "").split():
        name, _, value = item.removeprefix("-D").partition("=")
        if not re.fullmatch(r"NCNN_[A-Z0-9_]+", name) or not value:
            raise RuntimeError(f"{EXTRA_OPTIONS_ENV}: {item!r} is not -DNCNN_NAME=VALUE")
        options[name] = value
    return options


def build_ncnn(jobs: int | None = None) -> tuple[Path, float]:
    """(ncnn's CMake package folder for find_package, seconds spent building: 0 when cached)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    extra = extra_options()
    key = hashlib.sha256(repr((NCNN_VERSION, LAYERS, 1) + ((tuple(sorted(extra.items())),) if extra else ()))
                         .encode()).hexdigest()[:12]
    install = root / f"ncnn-{NCNN_VERSION}-host-{key}"
    package = install / "lib" / "cmake" / "ncnn"
    if (package / "ncnnConfig.cmake").is_file():
        return package, 0.0
    start = time.monotonic()
    source = ncnn_source(root)
    build = root / f"build-{NCNN_VERSION}-{key}"
    staging = root / f"{install.name}.installing"
    shutil.rmtree(build, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    build.mkdir()
    log = build / "build.log"
    options = {"CMAKE_BUILD_TYPE": "Release", "NCNN_VULKAN": "OFF", "NCNN_BUILD_TOOLS": "OFF",
               "NCNN_BUILD_EXAMPLES": "OFF", "NCNN_BUILD_BENCHMARK": "OFF", "NCNN_BUILD_TESTS": "OFF",
               "NCNN_PYTHON": "OFF", "NCNN_SHARED_LIB": "OFF", "NCNN_C_API": "OFF",
               "NCNN_PIXEL_DRAWING": "OFF", "NCNN_PIXEL_ROTATE": "OFF", "CMAKE_INSTALL_PREFIX": staging}
    options.update({f"WITH_LAYER_{name.lower()}": "ON" if name in LAYERS else "OFF"
                    for name in _all_layers(source)})
    options.update(extra)
    _run(["cmake", "-S", source, "-B", build, *[f"-D{k}={v}" for k, v in options.items()]], log)
    _run(["cmake", "--build", build, "--parallel", str(jobs or os.cpu_count() or 2)], log)
    _run(["cmake", "--install", build], log)
    staging.replace(install)
    shutil.rmtree(build, ignore_errors=True)
    return package, time.monotonic() - start


KOTLIN_VERSION = "2.4.20"


def kotlin_compiler() -> Path:
    """``kotlinc`` from the npm registry's ``kotlin-compiler`` package, installed once under the cache."""
    prefix = cache_root() / f"kotlin-compiler-{KOTLIN_VERSION}"
    kotlinc = prefix / "node_modules" / "kotlin-compiler" / "bin" / "kotlinc"
    if kotlinc.is_file():
        return kotlinc
    if shutil.which("npm") is None:
        raise RuntimeError("the Kotlin compiler comes from npm (kotlin-compiler): install Node.js/npm")
    staging = prefix.with_name(prefix.name + ".installing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log = staging / "npm.log"
    _run(["npm", "install", "--no-audit", "--no-fund", "--prefix", staging, f"kotlin-compiler@{KOTLIN_VERSION}"], log)
    shutil.rmtree(prefix, ignore_errors=True)
    staging.replace(prefix)
    return kotlinc
