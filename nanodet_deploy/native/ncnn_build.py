"""ncnn's C++ library and the detector core's command-line program, built from the source the package registry
distributes: for the host (the tests of the Android app's chain) or for aarch64 (the emulated phone, phone.py).

The ``ncnn`` sdist on PyPI carries ncnn's full C++ sources and CMake build. Its version, URL and SHA-256 are
pinned once, in android_demo/core/ncnn.cmake (the app reads them there too), and equal the Python wheel's
(pyproject.toml), so every build runs the kernels ``infer --export`` runs. The builds are CPU only (no Vulkan),
static, with only the layers of android_demo/core/ncnn_layers.txt, and cached under the user cache
(``NANODET_NATIVE_CACHE``, else ``NANODET_DEPLOY_CACHE``, else ~/.cache/nanodet-deploy): a rerun finds the
installed build and builds nothing. A build that stopped half way is never used: each installs into a staging
folder renamed when complete.

aarch64: Debian's ``g++-aarch64-linux-gnu`` cross compiler, every ARM dispatch ncnn has on (ARMv8.2 fp16 and
dot product, ARMv8.4 bf16 and i8mm, SVE: ncnn picks at run time what ``getauxval(AT_HWCAP)`` reports, as on a
phone), the program linked statically (OpenMP included) so ``qemu-aarch64`` runs it without an aarch64 sysroot.
Measured on a 2-core AMD EPYC: ncnn 98 s, the program 4 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import time
from functools import lru_cache
from pathlib import Path

from ..errors import BuildError, DownloadError, UsageError
from ..files import cache_dir, download

ARCHES = ("host", "arm64")
CROSS_COMPILER = "aarch64-linux-gnu-g++"
# command -> Debian package, for the one-line message when one is missing
ARM64_TOOLS = {"cmake": "cmake", CROSS_COMPILER: "g++-aarch64-linux-gnu", "qemu-aarch64": "qemu-user"}
ARM64_TOOLCHAIN = f"""set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER {CROSS_COMPILER})
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
"""


def core_dir() -> Path:
    """The app's core sources (android_demo/core): inside the installed package (setup.py copies them there),
    else in the source checkout this package runs from."""
    for candidate in (Path(__file__).resolve().parent / "app_core",
                      Path(__file__).resolve().parents[2] / "android_demo" / "core"):
        if (candidate / "ncnn.cmake").is_file():
            return candidate
    raise UsageError("the Android app's core sources (android_demo/core) are not in this installation; "
                     "reinstall nanodet-deploy from its source")


@lru_cache(maxsize=1)
def pinned() -> dict[str, str]:
    """NANODET_NCNN_VERSION / _URL / _SHA256 as android_demo/core/ncnn.cmake sets them."""
    text = (core_dir() / "ncnn.cmake").read_text()
    values = {}
    for name in ("VERSION", "URL", "SHA256"):
        match = re.search(rf'set\(NANODET_NCNN_{name} "([^"]+)"\)', text)
        if not match:
            raise UsageError(f"{core_dir() / 'ncnn.cmake'}: no NANODET_NCNN_{name}")
        values[name.lower()] = match.group(1)
    return values


@lru_cache(maxsize=1)
def layers() -> tuple[str, ...]:
    return tuple(line.strip() for line in (core_dir() / "ncnn_layers.txt").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))


def cache_root() -> Path:
    return Path(os.environ.get("NANODET_NATIVE_CACHE") or cache_dir())


def missing_tools(arch: str) -> list[str]:
    """Debian packages of the commands an ``arch`` build and run need that this machine lacks."""
    tools = ARM64_TOOLS if arch == "arm64" else {"cmake": "cmake", "g++": "g++"}
    return [package for tool, package in tools.items() if shutil.which(tool) is None]


def ncnn_source(root: Path) -> Path:
    """The unpacked sdist (downloaded once with a progress bar, SHA-256 checked)."""
    version, url, sha256 = pinned()["version"], pinned()["url"], pinned()["sha256"]
    source = root / f"ncnn-{version}"
    if (source / "CMakeLists.txt").is_file() and (source / ".complete").is_file():
        return source
    archive = root / f"ncnn-{version}.tar.gz"
    if not archive.is_file() or _sha256(archive) != sha256:
        partial = archive.with_suffix(".part")
        try:
            with open(partial, "wb") as out:
                digest = download(url, out, f"ncnn {version} sources")
        except OSError as e:
            partial.unlink(missing_ok=True)
            reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
            raise DownloadError(f"cannot download {url} ({reason}); put that file at {archive}") from None
        if digest != sha256:
            partial.unlink()
            raise DownloadError(f"{url}: SHA-256 {digest}, expected {sha256}")
        partial.replace(archive)
    shutil.rmtree(source, ignore_errors=True)
    unpacking = root / f"ncnn-{version}.unpacking"
    shutil.rmtree(unpacking, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(unpacking, filter="data")
    (unpacking / f"ncnn-{version}" / ".complete").write_text("")
    (unpacking / f"ncnn-{version}").replace(source)
    shutil.rmtree(unpacking)
    return source


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_PERCENT = re.compile(rb"^\[\s*(\d+)%\]")


def _run(command: list, log: Path, advance=None) -> None:
    """``command`` with its output appended to ``log``; ``advance(percent)`` follows CMake's "[ 45%]" lines."""
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(map(str, command)) + "\n").encode())
        out.flush()
        process = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in process.stdout:
            out.write(line)
            match = _PERCENT.match(line)
            if advance and match:
                advance(int(match.group(1)))
        returncode = process.wait()
    if returncode != 0:
        raise BuildError(f"{' '.join(map(str, command[:2]))} failed (exit {returncode}); the log: {log}")


def _percent_bar(progress, description: str):
    """An ``advance(percent)`` for ``_run`` from the toolkit's ``progress(description, total)``."""
    if progress is None:
        return None
    step = progress(description, 100)
    done = [0]

    def advance(percent: int) -> None:
        while done[0] < min(percent, 100):
            step()
            done[0] += 1
    return advance


def _toolchain_options(arch: str, folder: Path) -> dict[str, str]:
    if arch == "host":
        return {}
    toolchain = folder / "aarch64.toolchain.cmake"
    toolchain.write_text(ARM64_TOOLCHAIN)
    return {"CMAKE_TOOLCHAIN_FILE": str(toolchain)}


@contextlib.contextmanager
def _build_lock(root: Path):
    """One build at a time per cache (two `verify --arch arm64` started together: the second waits, then finds
    the first one's build)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ncnn_key(arch: str, extra: dict[str, str]) -> str:
    # the host key is the one the tests' cache has used since issue 19 (unchanged: a warm cache stays warm)
    parts = (pinned()["version"], layers(), 1) + ((tuple(sorted(extra.items())),) if extra else ()) \
        + ((arch,) if arch != "host" else ())
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def build_ncnn(arch: str = "host", extra: dict[str, str] | None = None, jobs: int | None = None,
               progress=None) -> tuple[Path, float]:
    """(ncnn's CMake package folder for find_package, seconds spent building: 0 when cached). ``extra``: more
    ``NCNN_*`` CMake options (part of the cache key)."""
    if arch not in ARCHES:
        raise UsageError(f"unknown architecture '{arch}' ({', '.join(ARCHES)})")
    extra = dict(extra or {})
    root = cache_root()
    with _build_lock(root):
        return _build_ncnn(root, arch, extra, jobs, progress)


def _build_ncnn(root: Path, arch: str, extra: dict[str, str], jobs, progress) -> tuple[Path, float]:
    key = ncnn_key(arch, extra)
    version = pinned()["version"]
    install = root / f"ncnn-{version}-{arch}-{key}"
    package = install / "lib" / "cmake" / "ncnn"
    if (package / "ncnnConfig.cmake").is_file():
        return package, 0.0
    start = time.monotonic()
    source = ncnn_source(root)
    build = root / f"build-{version}-{key}"
    staging = root / f"{install.name}.installing"
    shutil.rmtree(build, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    build.mkdir()
    log = build / "build.log"
    options = {"CMAKE_BUILD_TYPE": "Release", "NCNN_VULKAN": "OFF", "NCNN_BUILD_TOOLS": "OFF",
               "NCNN_BUILD_EXAMPLES": "OFF", "NCNN_BUILD_BENCHMARK": "OFF", "NCNN_BUILD_TESTS": "OFF",
               "NCNN_PYTHON": "OFF", "NCNN_SHARED_LIB": "OFF", "NCNN_C_API": "OFF",
               "NCNN_PIXEL_DRAWING": "OFF", "NCNN_PIXEL_ROTATE": "OFF", "CMAKE_INSTALL_PREFIX": staging,
               **_toolchain_options(arch, build)}
    all_layers = re.findall(r"ncnn_add_layer\((\w+)", (source / "src" / "CMakeLists.txt").read_text())
    options.update({f"WITH_LAYER_{name.lower()}": "ON" if name in layers() else "OFF" for name in all_layers})
    options.update(extra)
    _run(["cmake", "-S", source, "-B", build, *[f"-D{k}={v}" for k, v in options.items()]], log)
    _run(["cmake", "--build", build, "--parallel", str(jobs or os.cpu_count() or 2)], log,
         _percent_bar(progress, f"building ncnn {version} ({arch})"))
    _run(["cmake", "--install", build], log)
    staging.replace(install)
    shutil.rmtree(build, ignore_errors=True)
    return package, time.monotonic() - start


def build_core_cli(arch: str = "host", extra: dict[str, str] | None = None, progress=None) -> tuple[Path, float]:
    """(the detector core's command-line program, android_demo/core/core_cli.cpp, built against ncnn for
    ``arch``; seconds spent building, ncnn included: 0 when cached). The cache key covers the core's sources."""
    package, seconds = build_ncnn(arch, extra, progress=progress)
    core = core_dir()
    digest = hashlib.sha256(package.as_posix().encode())
    for path in sorted(core.glob("*")):
        if path.suffix in (".cpp", ".h", ".txt", ".cmake"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    install = cache_root() / f"core-cli-{arch}-{digest.hexdigest()[:12]}"
    with _build_lock(cache_root()):
        return _build_core_cli(arch, package, core, install, seconds)


def _build_core_cli(arch: str, package: Path, core: Path, install: Path, seconds: float) -> tuple[Path, float]:
    program = install / "nanodet_core_cli"
    if program.is_file():
        return program, seconds
    start = time.monotonic()
    staging = install.with_name(install.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log = staging / "build.log"
    options = {"CMAKE_BUILD_TYPE": "Release", "NANODET_CORE_CLI": "ON", "ncnn_DIR": package,
               **_toolchain_options(arch, staging)}
    if arch == "arm64":
        # static, so qemu-aarch64 needs no aarch64 libraries; ncnn's exported OpenMP target names libgomp.so
        gomp = subprocess.run([CROSS_COMPILER, "-print-file-name=libgomp.a"], capture_output=True, text=True)
        options.update({"CMAKE_EXE_LINKER_FLAGS": "-static", "OpenMP_gomp_LIBRARY": gomp.stdout.strip()})
    _run(["cmake", "-S", core, "-B", staging / "build", *[f"-D{k}={v}" for k, v in options.items()]], log)
    _run(["cmake", "--build", staging / "build", "--parallel", str(os.cpu_count() or 2)], log)
    (staging / "build" / "nanodet_core_cli").replace(staging / "nanodet_core_cli")
    shutil.rmtree(staging / "build")
    shutil.rmtree(install, ignore_errors=True)
    staging.replace(install)
    return program, seconds + time.monotonic() - start
