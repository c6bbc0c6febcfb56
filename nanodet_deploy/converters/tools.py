"""Running a converter's command-line tool: in a child process, output captured, time-limited, and on failure
an ExportError that carries the tail of what the tool said."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ..errors import ExportError

TOOL_TIMEOUT_S = 1800
TIMEOUT_ENV = "NANODET_DEPLOY_TOOL_TIMEOUT"  # seconds; overrides TOOL_TIMEOUT_S


def tool_timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, TOOL_TIMEOUT_S))
    except ValueError:
        return TOOL_TIMEOUT_S


def run_tool(argv: list, name: str, timeout: float | None = None, cwd: str | Path | None = None) -> str:
    """Run ``argv``; its combined output, or ExportError naming ``name`` with the last lines of its output.
    A tool still running after ``timeout`` seconds (default: $NANODET_DEPLOY_TOOL_TIMEOUT or 1800) is
    killed."""
    timeout = tool_timeout() if timeout is None else timeout
    try:
        # its own process group: on a timeout, Ctrl-C or SIGTERM the tool and anything it started are ended
        process = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, cwd=cwd, start_new_session=True)
    except OSError as error:
        raise ExportError(f"{name} could not be started: {error}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{name} did not finish within {timeout:.0f} s") from None
    finally:
        if process.poll() is None:
            _end_group(process)
    output = (stdout + stderr).strip()
    if process.returncode != 0:
        tail = " | ".join(output.splitlines()[-3:]) or "no output"
        raise ExportError(f"{name} failed (exit {process.returncode}): {tail}")
    return output


def _end_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
