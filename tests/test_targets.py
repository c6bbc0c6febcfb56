"""The one registry of backends: every row's converter and runtime keep their contract, its extra exists, and
an option a target does not take is the same one-line usage error on every backend."""

import importlib
import inspect
import re
import tomllib

import pytest

from nanodet_deploy.targets import BACKENDS, OPTION_FLAGS, REFERENCE, TARGETS

from .helpers import CALIB_IMAGES, ROOT, error_lines, export_cli, weights

FLAG_VALUES = {"opset": ["--opset", "13"], "dynamic_batch": ["--dynamic-batch"], "calib_method": ["--calib-method", "mse"],
               "keep_float": ["--keep-float", "head"], "u8_input": ["--u8-input"]}


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_row_keeps_the_converter_and_runtime_contract(name):
    target = TARGETS[name]
    converter = importlib.import_module(f"nanodet_deploy.converters.{target.converter}")
    for attribute in ("convert", "describe", "embed_manifest", "embedded_manifest", "CALIBRATION_METHODS",
                      "FLOAT_PARTS", "DEFAULT_FLOAT_PARTS"):
        assert hasattr(converter, attribute), (name, attribute)
    accepted = set(inspect.signature(converter.convert).parameters)
    assert target.options <= accepted, (name, target.options - accepted)  # every option it claims, it takes
    method, parts = target.int8_defaults()
    assert (method in converter.CALIBRATION_METHODS) if converter.CALIBRATION_METHODS else method is None
    assert set(parts) <= {*converter.FLOAT_PARTS, "auto"}
    runtime = target.runtime_class()
    assert callable(getattr(runtime, "from_export", None)) and callable(runtime.run)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    in_all = re.findall(r"\[([^\]]*)\]", extras["all"][0])[0].split(",")
    assert target.extra in extras and target.extra in in_all


def test_the_reference_is_a_backend_not_a_target():
    assert BACKENDS[REFERENCE.backend] is REFERENCE and REFERENCE.backend not in {t.backend for t in TARGETS.values()}


def bad_options():
    for name, target in TARGETS.items():
        for option in sorted(set(OPTION_FLAGS) - target.options):
            yield name, [*FLAG_VALUES[option], "--int8", "--calib", CALIB_IMAGES], f"{OPTION_FLAGS[option]} does not apply to --to {name}"
        for option in sorted(target.options & {"calib_method", "keep_float"}):
            yield name, FLAG_VALUES[option], f"{OPTION_FLAGS[option]} applies to --int8 exports only"
        converter = importlib.import_module(f"nanodet_deploy.converters.{target.converter}")
        if converter.CALIBRATION_METHODS:
            yield name, ["--int8", "--calib", CALIB_IMAGES, "--calib-method", "frobnicate"], "(got 'frobnicate')"
        yield name, ["--int8", "--calib", CALIB_IMAGES, "--keep-float", "tail"], "unknown --keep-float parts ['tail']"
        if "weight-int8" not in target.precisions:
            yield name, ["--weight-int8"], f"--to {name} exports {', '.join(target.precisions)}, not weight-int8"


@pytest.mark.parametrize("name, args, fragment", list(bad_options()))
def test_an_option_a_target_does_not_take_is_one_usage_line(tmp_path, name, args, fragment):
    result = export_cli(tmp_path / "out", name, "--checkpoint", weights(320), *args)
    lines = error_lines(result)
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0], lines
    assert not (tmp_path / "out").exists()
