from . import helpers  # noqa: F401  (fails the session early, with a clear message, if ../shared is absent)

import os  # noqa: E402
from pathlib import Path  # noqa: E402

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


EXPORTS_ENV = "NANODET_TEST_EXPORTS"
GATE = ("--verify-images", helpers.VAL_IMAGES, "--verify-ann", helpers.VAL_ANN, "--threads", "2")


@pytest.fixture(scope="session")
def built(tmp_path_factory, worker_id):
    """``built(target, size, *options, gate=True)`` -> (folder, CompletedProcess): ``nanodet-deploy export --to
    TARGET`` of the official SIZE weights with OPTIONS, under the full parity gate on val-dev (``gate=False``:
    without --verify-images), made once per run and shared by every test that needs that export — across
    pytest-xdist workers too (a lock per export in the run's shared temporary folder). A test that changes the
    folder works on a copy (``helpers.copy_export``). A rejected export is returned too (its folder is
    OUT/rejected): the test decides what its verdict should be. ``NANODET_TEST_EXPORTS=DIR``: kept in DIR instead,
    where another run finds them (.ci/run's second pass, under the oldest OpenCV, reuses the first pass's)."""
    import fcntl
    import hashlib
    import json
    import subprocess

    root = tmp_path_factory.getbasetemp()
    root = Path(os.environ.get(EXPORTS_ENV) or (root.parent if worker_id != "master" else root) / "built")
    root.mkdir(parents=True, exist_ok=True)

    def build(target: str, size: int, *options, gate: bool = True):
        key = json.dumps([target, size, [str(o) for o in options], gate])
        folder = root / f"{target}-{size}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
        folder.mkdir(exist_ok=True)
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = folder / "result.json"
            if not record.is_file():
                result = helpers.export_cli(folder / "export", target, "--checkpoint", helpers.weights(size),
                                            *options, *(GATE if gate else ()))
                record.write_text(json.dumps({"key": key, "returncode": result.returncode, "stdout": result.stdout,
                                              "stderr": result.stderr}))
        made = json.loads(record.read_text())
        result = subprocess.CompletedProcess([], made["returncode"], made["stdout"], made["stderr"])
        assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: rejected by the gate
        return (folder / "export" if result.returncode == 0 else folder / "export" / "rejected"), result
    return build


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    """pytest-xdist's worker name ("gw0", ...), or "master" without it (xdist's own fixture, when installed)."""
    return getattr(request.config, "workerinput", {}).get("workerid", "master")
