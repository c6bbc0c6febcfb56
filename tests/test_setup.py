"""What the README's "Set up" tells a new user is what CI installs: the system packages of the test command."""

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
