"""Builds the optional native pre/post-processing library (nanodet_deploy/native): the Android app's C++ core
(android_demo/core/nanodet_core.cpp) behind a C interface that nanodet_deploy.native loads with ctypes.

Everything else is in pyproject.toml. Without a C++17 compiler the install still succeeds and the toolkit uses
its numpy implementation (same detections, slower; nanodet_deploy.native.available() says which runs).
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# the app's detector core and its ncnn pins, shipped inside the package: `verify --arch arm64` builds them for
# aarch64 (nanodet_deploy/native/ncnn_build.py finds them in nanodet_deploy/native/app_core)
APP_CORE = ["CMakeLists.txt", "core_cli.cpp", "nanodet_core.cpp", "nanodet_core.h", "nanodet_ncnn.cpp",
            "nanodet_ncnn.h", "ncnn.cmake", "ncnn_layers.txt"]


class BuildPyWithAppCore(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "nanodet_deploy" / "native" / "app_core"
        target.mkdir(parents=True, exist_ok=True)
        for name in APP_CORE:
            shutil.copyfile(Path("android_demo/core") / name, target / name)


class OptionalBuildExt(build_ext):
    """A failed compile is a warning, not a failed install: the numpy path does the same work, slower."""

    def run(self):
        try:
            super().run()
        except Exception as error:  # compiler missing or broken: setuptools raises its own error types
            print(f"warning: nanodet_deploy's native pre/post-processing was not built ({error}); "
                  "the numpy implementation is used")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as error:
            print(f"warning: {ext.name} was not built ({error}); the numpy implementation is used")

    def get_export_symbols(self, ext):
        return []  # a plain C library loaded with ctypes, not a Python module: no PyInit_ symbol


core = Extension(
    "nanodet_deploy.native._nanodet_core",
    sources=["android_demo/core/nanodet_core.cpp", "nanodet_deploy/native/core_capi.cpp"],
    include_dirs=["android_demo/core"],
    language="c++",
    # -ffp-contract=off: the warp reproduces OpenCV's float32 kernel bit for bit only with the fused
    # multiply-adds it writes explicitly (std::fma) and no others, as android_demo/core/CMakeLists.txt builds it;
    # -fno-trapping-math: loops with comparisons vectorise (decode's exp), with the same results
    extra_compile_args=["-std=c++17", "-O3", "-ffp-contract=off", "-fno-trapping-math"],
    optional=True,
)

setup(ext_modules=[core], cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithAppCore})
