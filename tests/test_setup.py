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
