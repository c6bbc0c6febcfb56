"""The registry tells the truth: one more backend added as one row (tests/toy_backend.py, registered through
NANODET_DEPLOY_BACKENDS like any backend living outside the package) is picked up by every backend-parametrised
test with no other edit, and passes them; and no test lists backends by hand (it would leave a new one out)."""

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

from nanodet_deploy.targets import BACKENDS, PLUGINS_ENV

from .helpers import ROOT

# the modules whose tests are parametrised over the registry's backends
PARAMETRISED = ("test_backends.py", "test_targets.py", "test_untrusted.py", "test_hardening.py")


def test_one_more_backend_is_one_row_and_the_suite_picks_it_up(tmp_path):
    report = tmp_path / "toy.xml"
    env = {**os.environ, PLUGINS_ENV: "tests.toy_backend",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "toy",
                             f"--junitxml={report}", *(f"tests/{m}" for m in PARAMETRISED)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    cases = ElementTree.parse(report).getroot().iter("testcase")
    by_module: dict[str, list[str]] = {}
    for case in cases:
        assert case.find("failure") is None and case.find("error") is None and case.find("skipped") is None, \
            case.get("name")
        by_module.setdefault(case.get("classname").rsplit(".", 1)[-1], []).append(case.get("name"))
    assert set(by_module) == {m.removesuffix(".py") for m in PARAMETRISED}, by_module
    assert all("toy" in name for names in by_module.values() for name in names)
    # the common export checks in FP32 (no FP16 or INT8 for a format that has neither), the row's contract and
    # extra, its usage errors, damaged and swapped files, concurrency
    assert any(n.startswith("test_fp32_reproduces_pytorch") for n in by_module["test_backends"]), by_module


def hand_listed(path) -> list[str]:
    """Literal lists, tuples and sets of two or more backend names in a test module."""
    names = {n for target in BACKENDS.values() for n in (target.name, *target.aliases)}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and len(node.elts) >= 2 and all(
                isinstance(e, ast.Constant) and e.value in names for e in node.elts):
            found.append(f"{path.name}:{node.lineno}: {[e.value for e in node.elts]}")
    return found


def test_no_test_lists_backends_by_hand():
    """Backends come from targets.TARGETS / BACKENDS (or a property of their rows), never from a literal list."""
    found = [line for path in sorted((ROOT / "tests").glob("*.py")) for line in hand_listed(path)]
    assert not found, "\n".join(found)


def test_the_hand_list_check_finds_a_hand_list(tmp_path):
    path = tmp_path / "test_x.py"
    path.write_text('import pytest\n@pytest.mark.parametrize("b", ["onnxruntime", "ncnn"])\ndef test_x(b): pass\n')
    assert hand_listed(path) == ["test_x.py:2: ['onnxruntime', 'ncnn']"]
