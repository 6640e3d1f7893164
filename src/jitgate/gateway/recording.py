"""The recordings of one gateway session: a private directory with one file per channel.

The gateway opens a ``SessionRecordings`` when a session starts, a recorder per channel as the
channel opens (``shell``, ``exec``, ``sftp``, ``forward``; the formats are in ``recorders.py``),
calls ``flush`` now and then, and at the end puts ``close_all()``'s facts, as ``as_json()``, into
the ``session.ended`` audit record, where ``audit verify`` holds the files to them
(``audit/recordings.py``). Files are ``ROOT/<session_id>/<channel>-<kind>.<ext>``; a channel number
the session uses again gets ``<channel>-<kind>-<n>.<ext>``. ROOT and the session's directory are
0700, the files 0600.

Recording fails closed: whatever cannot be written raises ``RecordingFailed`` (one line), and
the gateway ends the session. A recorder that failed refuses everything after, but its
``close`` still returns its facts, marked truncated, without raising; ``flush`` raises as long
as any recorder of the session has failed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from jitgate.audit.recordings import SESSION_ID
from jitgate.gateway.recorders import ExecRecorder, ForwardRecorder, Recorder, SftpRecorder, ShellRecorder
from jitgate.gateway.recording_file import RecordingFacts, RecordingFailed, RecordingFile, failure

__all__ = [
    "ExecRecorder",
    "ForwardRecorder",
    "RecordingFacts",
    "RecordingFailed",
    "SessionRecordings",
    "SftpRecorder",
    "ShellRecorder",
]

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_EXTENSIONS = {"shell": "cast", "exec": "jsonl", "sftp": "jsonl", "forward": "jsonl"}
_MAX_CHANNEL = 2**32 - 1
R = TypeVar("R", bound=Recorder)


class SessionRecordings:
    """Every channel recording of the session ``session_id`` (``s-`` and 16 hex digits) under ``root``."""

    def __init__(self, root: Path, session_id: str) -> None:
        if not SESSION_ID.fullmatch(session_id):
            raise RecordingFailed(
                "the session recording cannot be written: the session id is not s- and 16 hex digits"
            )
        self.session_id = session_id
        self._recorders: list[Recorder] = []
        self._names: set[str] = set()
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            root_fd = os.open(root, _DIRECTORY)
            try:
                os.fchmod(root_fd, 0o700)
                os.mkdir(session_id, 0o700, dir_fd=root_fd)  # a directory already there is refused
                self._dir: int | None = os.open(session_id, _DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
            finally:
                os.close(root_fd)
            os.fchmod(self._dir, 0o700)
        except OSError as exc:
            raise failure(exc) from None

    def shell(
        self, channel: int, *, width: int, height: int, term: str, command: str | None, timestamp: float
    ) -> ShellRecorder:
        return self._start(
            channel,
            "shell",
            lambda file, name: ShellRecorder(
                file,
                channel,
                name,
                width=width,
                height=height,
                term=term,
                command=command,
                timestamp=timestamp,
            ),
        )

    def exec(self, channel: int, command: str, *, cap_bytes: int, timestamp: float) -> ExecRecorder:
        return self._start(
            channel,
            "exec",
            lambda file, name: ExecRecorder(
                file, channel, name, command=command, cap_bytes=cap_bytes, timestamp=timestamp
            ),
        )

    def sftp(self, channel: int, *, timestamp: float) -> SftpRecorder:
        return self._start(
            channel, "sftp", lambda file, name: SftpRecorder(file, channel, name, timestamp=timestamp)
        )

    def forward(
        self,
        channel: int,
        *,
        dest_host: str,
        dest_port: int,
        orig_host: str,
        orig_port: int,
        timestamp: float,
    ) -> ForwardRecorder:
        return self._start(
            channel,
            "forward",
            lambda file, name: ForwardRecorder(
                file,
                channel,
                name,
                dest_host=dest_host,
                dest_port=dest_port,
                orig_host=orig_host,
                orig_port=orig_port,
                timestamp=timestamp,
            ),
        )

    def flush(self) -> None:
        """Write out what every open recorder holds; raises if any recorder of the session failed."""
        for recorder in self._recorders:
            if recorder.failed is not None:
                raise recorder.failed
            recorder.flush()

    def close_all(self) -> list[RecordingFacts]:
        """Close what is still open (a session killed, say); the facts of every recorder ever
        opened, in channel order (and in the order opened, for a channel number used again)."""
        for recorder in self._recorders:
            if not recorder.closed:
                _close(recorder)
        if self._dir is not None:
            with contextlib.suppress(OSError):  # nothing was written through it
                os.close(self._dir)
            self._dir = None
        return self.facts()

    def facts(self) -> list[RecordingFacts]:
        """The facts of every recorder: final for closed ones, so far for open ones."""
        ordered = sorted(enumerate(self._recorders), key=lambda pair: (pair[1].channel, pair[0]))
        return [recorder.facts() for _, recorder in ordered]

    def _start(self, channel: int, kind: str, build: Callable[[RecordingFile, str], R]) -> R:
        file, name = self._open(channel, kind)
        try:
            recorder = build(file, name)
        except RecordingFailed:
            file.close()
            raise
        self._recorders.append(recorder)
        return recorder

    def _open(self, channel: int, kind: str) -> tuple[RecordingFile, str]:
        if self._dir is None:
            raise RecordingFailed("the session recording cannot be written: its recordings are closed")
        if isinstance(channel, bool) or not 0 <= channel <= _MAX_CHANNEL:
            raise RecordingFailed(f"the session recording cannot be written: no channel number {channel!r}")
        base = f"{channel}-{kind}"
        name, n = f"{base}.{_EXTENSIONS[kind]}", 1
        while name in self._names:
            n += 1
            name = f"{base}-{n}.{_EXTENSIONS[kind]}"
        file = RecordingFile(self._dir, name)
        self._names.add(name)
        return file, f"{self.session_id}/{name}"


def _close(recorder: Recorder) -> RecordingFacts:
    if isinstance(recorder, ShellRecorder | ExecRecorder):
        return recorder.close(None)
    if isinstance(recorder, SftpRecorder | ForwardRecorder):
        return recorder.close()
    raise TypeError(type(recorder).__name__)
