from . import helpers  # noqa: F401  (fails the session early, with a clear message, if ../shared is absent)

import pytest  # noqa: E402


def _machine_line() -> str:
    from nanodet_deploy.bench import machine, machine_line

    return f"machine: {machine_line(machine())}"


def pytest_report_header(config):
    """The CPU, its instruction sets, the backend and OpenCV versions and the warp kernels the suite runs on: the
    kernels that differ between machines, named before any figure the tests print (and after the results, below,
    for `pytest -q`, which shows no header)."""
    return _machine_line()


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(_machine_line())


@pytest.fixture(scope="session")
def ncnn_416_export(tmp_path_factory):
    """``ncnn_416_export(name, *options)``: ``nanodet-deploy export --to ncnn`` of the official 416 weights
    under the full parity gate (val-dev with annotations), made once per session and shared by the tests of the
    exporter (test_export_ncnn.py) and of the Android app (test_android_native.py). Returns (folder, result)."""
    made = {}

    def export(name: str, *options):
        if name not in made:
            out = tmp_path_factory.mktemp("ncnn") / name
            result = helpers.export_cli(out, "ncnn", "--checkpoint", helpers.weights(416), *options,
                                        "--verify-images", helpers.VAL_IMAGES, "--verify-ann", helpers.VAL_ANN,
                                        "--threads", "2")
            assert result.returncode == 0, result.stdout + result.stderr
            made[name] = (out, result, options)
        assert made[name][2] == options, f"{name} was made with other options"
        return made[name][:2]
    return export
