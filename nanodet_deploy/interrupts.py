"""Ctrl-C and SIGTERM as exceptions (KeyboardInterrupt, errors.Terminated), the exit codes that say which
ended a run, and sections a signal may not split.

The CLI installs ``handle`` for both signals: each raises where the program is, so every ``finally`` cleans
up (staging folders, child converters, temporary files). Inside ``uninterrupted()`` the exception waits until
the section ends — e.g. a video's JSON line and the frame count its partial record states, which must agree.
"""

from __future__ import annotations

import contextlib
import signal

from .errors import Terminated

_state = {"depth": 0, "pending": None, "received": None}


def handle(signum, frame) -> None:
    """The handler for SIGINT and SIGTERM: raise, or remember the signal inside ``uninterrupted()``."""
    _state["received"] = signum
    error = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    if _state["depth"]:
        _state["pending"] = _state["pending"] or error
        return
    raise error


@contextlib.contextmanager
def uninterrupted():
    """A section that a Ctrl-C / SIGTERM does not split: one arriving inside is raised when the section ends."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        pending = _state["pending"]
        if pending is not None and not _state["depth"]:
            _state["pending"] = None
            raise pending


def install() -> None:
    """``handle`` for SIGTERM, and for SIGINT unless the process started with it ignored (a background job)."""
    signal.signal(signal.SIGTERM, handle)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, handle)


def exit_code(code):
    """The code to exit with: 128 + N (the shell's "killed by signal N": 143 SIGTERM, 130 Ctrl-C) when a signal
    ended the run with a failure; ``code`` otherwise (a run that Ctrl-C ended normally — an endless camera —
    exits 0)."""
    if code in (0, None) or _state["received"] is None:
        return code
    return 128 + _state["received"]
