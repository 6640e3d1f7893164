"""Signals during a session that holds a key on disk: the key goes, however the session ends.

Python's default for SIGTERM and SIGHUP is to die on the spot, skipping every ``finally``, and
``jitgate ssh`` keeps its session key in a file between ``ssh-keygen`` and the end of ``ssh``.
Inside ``signals_end_session`` SIGINT, SIGTERM and SIGHUP raise ``SessionSignal`` instead, once:
the first one unwinds the session through its clean-up, later ones are ignored so that they
cannot cut the clean-up short. While a child runs (``run_child``) they are passed on to it, and the
session ends when the child has. Standard library only (the ``jitgate ssh`` fast path).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

from jitgate import errors

SESSION_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class ProgramMissing(errors.JitgateError):
    """The local program jitgate hands over to (ssh, psql) is not installed."""

    code = "program_missing"


class SessionSignal(BaseException):
    """A signal ended the session. A ``BaseException``: no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def signals_end_session() -> Iterator[None]:
    """Until the block ends, the first SIGINT/SIGTERM/SIGHUP raises ``SessionSignal``."""
    ending: list[int] = []

    def end(signum: int, _frame: FrameType | None) -> None:
        if not ending:
            ending.append(signum)
            raise SessionSignal(signum)

    previous: dict[int, Any] = {}  # whatever signal.signal returned, to put back
    try:
        for sig in SESSION_SIGNALS:
            previous[sig] = signal.signal(sig, end)
    except ValueError:  # not the main thread: signals are not ours to handle there
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ended_by_signals(session: Callable[[], int]) -> int:
    """Run ``session`` (which cleans up after itself); a signal ends it with 128+N and one line."""
    try:
        with signals_end_session():
            return session()
    except SessionSignal as stopped:
        sys.stderr.write(f"error: stopped by {stopped.name}; the session key is removed\n")
        return stopped.exit_code


def run_child(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run ``argv`` in the foreground and return its exit status (128+N when killed by signal N).

    Ctrl-C reaches the child from the terminal; a signal sent to us alone is passed on to it, also
    one that arrives while it is being started. We stay until it has ended, so the caller's
    clean-up runs after the child stopped using the files.
    """
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in SESSION_SIGNALS}
    try:
        try:
            child = subprocess.Popen(argv, env=env)
        except FileNotFoundError:
            raise ProgramMissing(f"{argv[0]} is not installed or not on PATH") from None
        for signum in pending:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
    return 128 - code if code < 0 else code
