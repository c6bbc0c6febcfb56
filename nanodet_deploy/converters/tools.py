"""Running a converter's command-line tool: in a child process, output captured, time-limited, and on failure
an ExportError that carries the tail of what the tool said."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .onnx import ExportError

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
        result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{name} did not finish within {timeout:.0f} s") from None
    except OSError as error:
        raise ExportError(f"{name} could not be started: {error}") from None
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        tail = " | ".join(output.splitlines()[-3:]) or "no output"
        raise ExportError(f"{name} failed (exit {result.returncode}): {tail}")
    return output
