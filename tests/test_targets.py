"""The one registry of backends: every row's converter and runtime keep their contract, its extra exists, and
an option a target does not take is the same one-line usage error on every backend."""

import importlib
import importlib.util
import inspect
import re
import tomllib

import pytest

from nanodet_deploy.errors import MissingBackendError
from nanodet_deploy.runtimes.base import Runtime
from nanodet_deploy.targets import BACKENDS, OPTION_FLAGS, REFERENCE, TARGETS

from .helpers import CALIB_IMAGES, ROOT, error_lines, export_cli, weights

FLAG_VALUES = {"opset": ["--opset", "13"], "dynamic_batch": ["--dynamic-batch"], "calib_method": ["--calib-method", "mse"],
               "keep_float": ["--keep-float", "head"], "u8_input": ["--u8-input"]}


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_row_keeps_the_converter_and_runtime_contract(name):
    target = TARGETS[name]
    converter = target.converter_module()
    for attribute in ("convert", "describe", "embed_manifest", "embedded_manifest", "CALIBRATION_METHODS",
                      "FLOAT_PARTS", "DEFAULT_FLOAT_PARTS"):
        assert hasattr(converter, attribute), (name, attribute)
    accepted = set(inspect.signature(converter.convert).parameters)
    assert target.options <= accepted, (name, target.options - accepted)  # every option it claims, it takes
    method, parts = target.int8_defaults()
    assert (method in converter.CALIBRATION_METHODS) if converter.CALIBRATION_METHODS else method is None
    assert set(parts) <= {*converter.FLOAT_PARTS, "auto"}
    runtime = target.runtime_class()
    assert issubclass(runtime, Runtime) and runtime.from_export is not Runtime.from_export
    assert runtime.run is not Runtime.run


def distribution(name: str) -> str:
    """A package or requirement name normalised as pip compares them (PEP 503): ai_edge_litert = ai-edge-litert."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extras() -> dict[str, set[str]]:
    """pyproject's extras: name -> the distributions it installs (an extra naming others is expanded)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def expand(name):
        found = set()
        for requirement in declared[name]:
            nested = re.fullmatch(r"nanodet-deploy\[([^\]]*)\]", requirement)
            if nested:
                for other in nested.group(1).split(","):
                    found |= expand(other.strip())
            else:
                found.add(distribution(re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0]))
        return found

    return {name: expand(name) for name in declared}


@pytest.mark.parametrize("name", list(BACKENDS))
def test_each_extra_installs_every_package_its_row_needs(name):
    """`pip install nanodet-deploy[EXTRA]` alone is enough to export to and run that backend, INT8 included (the
    shared recipe calibrates with ONNX Runtime); `all` installs every backend's."""
    target, found = BACKENDS[name], extras()
    assert target.extra in found, f"pyproject.toml has no extra '{target.extra}' for {name}"
    missing = {distribution(p) for p in target.packages} - found[target.extra]
    assert not missing, f"extra '{target.extra}' lacks {sorted(missing)}"
    assert {distribution(p) for p in target.packages} <= found["all"]


def test_a_missing_package_of_an_export_names_the_extra(monkeypatch):
    """Any package an export needs — the runtime's, ONNX's, the INT8 recipe's — missing: one line naming the extra
    (find_spec answers for a package that is not installed; nothing else is replaced)."""
    real = importlib.util.find_spec
    for package in TARGETS["ncnn"].packages:
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, p=package: None if n == p else real(n, *a))
        with pytest.raises(MissingBackendError, match=rf"'{package}'.*pip install 'nanodet-deploy\[ncnn\]'"):
            TARGETS["ncnn"].converter_module()


def test_the_reference_is_a_backend_not_a_target():
    assert BACKENDS[REFERENCE.backend] is REFERENCE and REFERENCE.backend not in {t.backend for t in TARGETS.values()}


def bad_options():
    for name, target in TARGETS.items():
        int8 = ["--int8", "--calib", CALIB_IMAGES] if "int8" in target.precisions else []
        for option in sorted(set(OPTION_FLAGS) - target.options):
            yield name, [*FLAG_VALUES[option], *int8], f"{OPTION_FLAGS[option]} does not apply to --to {name}"
        for option in sorted(target.options & {"calib_method", "keep_float"}):
            yield name, FLAG_VALUES[option], f"{OPTION_FLAGS[option]} applies to --int8 exports only"
        converter = importlib.import_module(target.converter)
        if converter.CALIBRATION_METHODS:
            yield name, [*int8, "--calib-method", "frobnicate"], "(got 'frobnicate')"
        if int8:
            yield name, [*int8, "--keep-float", "tail"], "unknown --keep-float parts ['tail']"
        else:
            yield name, ["--int8", "--calib", CALIB_IMAGES], f"--to {name} exports {', '.join(target.precisions)}, not int8"
        if "weight-int8" not in target.precisions:
            yield name, ["--weight-int8"], f"--to {name} exports {', '.join(target.precisions)}, not weight-int8"


@pytest.mark.parametrize("name, args, fragment", list(bad_options()))
def test_an_option_a_target_does_not_take_is_one_usage_line(tmp_path, name, args, fragment):
    result = export_cli(tmp_path / "out", name, "--checkpoint", weights(320), *args)
    lines = error_lines(result)
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0], lines
    assert not (tmp_path / "out").exists()
