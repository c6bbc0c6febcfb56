"""What the README's "Set up" tells a new user is what CI installs: the system packages of the test command."""

import os
import re

from .helpers import ROOT


def system_packages() -> dict[str, str]:
    """command -> Debian package, from .ci/system-packages (what .ci/run installs when the command is missing)."""
    rows = [line.split()[:2] for line in (ROOT / ".ci" / "system-packages").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return dict(rows)


def test_the_readme_names_every_system_package_ci_installs():
    readme = (ROOT / "README.md").read_text()
    setup = readme[readme.index("## Set up"):readme.index("\n## ", readme.index("## Set up") + 1)]
    named = re.search(r"apt-get install ([^\n`]+)", setup)
    assert named, "the README's Set up has no apt-get install line"
    assert named.group(1).split() == list(system_packages().values())
    assert {"cmake", "g++", "javac", "npm", "chromium", "readelf"} <= set(system_packages())


def test_ci_installs_from_that_list_and_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".ci/system-packages" in ci
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"pip install torch==2\.13\.0 && pip install -e \"\.\[all,test\]\" && (pytest[^\n`]*)", readme)
    assert command and f"\n{command.group(1)}\n" in ci


def test_the_package_ships_the_apps_core_for_the_emulated_phone():
    """`verify --arch arm64` builds android_demo/core for aarch64 from an installed package: setup.py copies every
    file of that folder into nanodet_deploy/native/app_core, and MANIFEST.in puts them into the sdist."""
    setup = (ROOT / "setup.py").read_text()
    listed = re.search(r"APP_CORE = \[([^\]]*)\]", setup)
    assert listed, "setup.py lists no APP_CORE"
    shipped = re.findall(r'"([^"]+)"', listed.group(1))
    assert sorted(shipped) == sorted(p.name for p in (ROOT / "android_demo" / "core").iterdir() if p.is_file())
    manifest_in = (ROOT / "MANIFEST.in").read_text()
    assert all(f"android_demo/core/{name}" in manifest_in for name in shipped)


def test_one_extra_alone_exports_its_backend_in_int8_and_names_the_others(tmp_path):
    """`pip install nanodet-deploy[ncnn]` in a fresh venv (the project as a user gets it: a built wheel, not this
    checkout on the path): `export --to ncnn --int8` works — the shared recipe's ONNX and ONNX Runtime come with the
    extra — and `--to openvino` is one line naming the extra to add, exit 2. (Before issue 30 the first ended in an
    ImportError of onnxruntime.) Installs from pip's cache and the local wheel folder: ~90 s here."""
    import subprocess
    import sys

    from nanodet_deploy.targets import TARGETS

    from .helpers import CALIB_IMAGES, error_lines, weights

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    for packages in (["torch==2.13.0"], [f"{ROOT}[ncnn]"]):  # torch first and pinned, as the README says
        done = subprocess.run([*pip, *packages], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    cli = [venv / "bin" / "nanodet-deploy", "export", "--checkpoint", weights(320)]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path))}
    made = subprocess.run([*cli, "--to", "ncnn", "--int8", "--calib", CALIB_IMAGES, "--calib-images", "8",
                           "--keep-float", "none", "--out", tmp_path / "ncnn"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=900)
    assert made.returncode == 0 and (tmp_path / "ncnn" / "model.table").is_file(), made.stdout + made.stderr
    for name, target in TARGETS.items():
        if name != "ncnn" and not set(target.packages) <= set(TARGETS["ncnn"].packages):
            refused = subprocess.run([*cli, "--to", name, "--out", tmp_path / name], capture_output=True, text=True,
                                     cwd=tmp_path, env=env, timeout=300)
            assert refused.returncode == 2 and len(error_lines(refused)) == 1, refused.stderr
            assert f"pip install 'nanodet-deploy[{target.extra}]'" in refused.stderr and not (tmp_path / name).exists()
