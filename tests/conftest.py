from . import helpers  # noqa: F401  (fails the session early, with a clear message, if ../shared is absent)

import pytest  # noqa: E402


def _machine_line() -> str:
    from nanodet_deploy.machine import machine, machine_line

    return f"machine: {machine_line(machine())}"


def pytest_report_header(config):
    """The CPU, its instruction sets, the backend and OpenCV versions and the warp kernels the suite runs on: the
    kernels that differ between machines, named before any figure the tests print (and after the results, below,
    for `pytest -q`, which shows no header)."""
    return _machine_line()


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(_machine_line())


GATE = ("--verify-images", helpers.VAL_IMAGES, "--verify-ann", helpers.VAL_ANN, "--threads", "2")


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """``built(target, size, *options, gate=True)`` -> (folder, CompletedProcess): ``nanodet-deploy export --to
    TARGET`` of the official SIZE weights with OPTIONS, under the full parity gate on val-dev (``gate=False``:
    without --verify-images), made once per session and shared by every test that needs that export. A test that
    changes the folder works on a copy (``helpers.copy_export``). A rejected export is returned too (its folder
    is OUT/rejected): the test decides what its verdict should be."""
    made = {}

    def build(target: str, size: int, *options, gate: bool = True):
        key = (target, size, tuple(map(str, options)), gate)
        if key not in made:
            out = tmp_path_factory.mktemp(f"{target}-{size}") / "export"
            result = helpers.export_cli(out, target, "--checkpoint", helpers.weights(size), *options,
                                        *(GATE if gate else ()))
            assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: rejected by the gate
            made[key] = (out if result.returncode == 0 else out / "rejected", result)
        return made[key]
    return build
