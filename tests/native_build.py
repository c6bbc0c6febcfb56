"""What the tests of the Android app's native chain build beside ncnn (nanodet_deploy/native/ncnn_build.py builds
ncnn and the core's program, cached under ~/.cache/nanodet-deploy): the options for another ISA, and the Kotlin
compiler."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from nanodet_deploy.native.ncnn_build import _run, cache_root, pinned

NCNN_VERSION = pinned()["version"]


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
