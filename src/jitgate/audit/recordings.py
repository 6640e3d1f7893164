"""Holding the gateway's session recordings to what the audit chain says of them.

Each ``session.ended`` record lists the session's recordings in ``details["recordings"]``:
``{channel, kind, file, sha256, size, truncated}``, ``file`` relative to the recordings directory.
``check`` streams those records and reads every file once, in blocks, so neither many sessions
nor large recordings need much memory; a file that is missing, of another size or another
SHA-256 is a problem naming the session and the file. The chain was verified before, so the
records themselves are as the gateway wrote them.

A ``file`` is opened only if it has exactly the form the gateway writes,
``<session id>/<channel>-<kind>[-<n>].<ext>``: an absolute path or one with ``..`` is a problem
of its own and never opened, and neither the session's directory nor the file is followed
through a symbolic link. Pure apart from reading those files.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SESSION_ID = re.compile(r"s-[0-9a-f]{16}")
"""A gateway session id, also the name of its directory of recordings."""
RECORDING_FILE = re.compile(
    r"(?P<session>s-[0-9a-f]{16})/"
    r"(?P<name>(?:0|[1-9][0-9]{0,9})-(?:shell|exec|sftp|forward)(?:-[1-9][0-9]{0,9})?\.(?:cast|jsonl))"
)
"""The only form of a recording's ``file`` that is opened."""
MAX_PROBLEMS = 100
"""Problems listed at most; the last line then says how many more were found."""

_BLOCK = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under the name must not hang the check; it is refused below.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class RecordingsResult:
    """``problems``, one line each, the first found in the record numbered ``first_bad_seq``."""

    sessions: int
    recordings: int
    problems: tuple[str, ...]
    first_bad_seq: int | None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        plural = "" if self.recordings == 1 else "s"
        sessions = "session" if self.sessions == 1 else "sessions"
        return f"{self.recordings} recording{plural} of {self.sessions} {sessions} match"


def check(root: Path, ended: Iterable[tuple[int, Mapping[str, Any]]]) -> RecordingsResult:
    """Check the recordings that each ``(seq, details)`` of a ``session.ended`` record lists."""
    problems: list[str] = []
    extra = 0
    first_bad: int | None = None
    sessions = recordings = 0
    try:
        root_fd: int | None = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        root_fd = None  # every recording is then missing, and said to be
    try:
        for seq, details in ended:
            sessions += 1
            found = list(_session_problems(root_fd, root, seq, details))
            recordings += _count(details)
            if found and first_bad is None:
                first_bad = seq
            room = MAX_PROBLEMS - len(problems)
            problems.extend(found[:room])
            extra += max(0, len(found) - room)
    finally:
        if root_fd is not None:
            os.close(root_fd)
    if extra:
        problems.append(f"… and {extra} more damaged recordings")
    return RecordingsResult(sessions, recordings, tuple(problems), first_bad)


def _count(details: Mapping[str, Any]) -> int:
    listed = details.get("recordings")
    return len(listed) if isinstance(listed, list) else 0


def _session_problems(root_fd: int | None, root: Path, seq: int, details: Mapping[str, Any]) -> Iterable[str]:
    named = details.get("session_id")
    session = named if isinstance(named, str) and SESSION_ID.fullmatch(named) else None
    listed = details.get("recordings", [])
    if not isinstance(listed, list):
        yield f"audit record {seq} ({session or 'session.ended'}): its recordings are not a list"
        return
    for i, entry in enumerate(listed):
        file = entry.get("file") if isinstance(entry, dict) else None
        where = f"session {session or _session_of(file)}: recording {_shown(file)}"
        if not isinstance(entry, dict) or not _well_formed(entry):
            yield f"{where} (entry {i} of audit record {seq}) is not a recording's facts"
            continue
        matched = RECORDING_FILE.fullmatch(entry["file"])
        if matched is None:
            yield f"{where} is not a file name under the recordings directory (not opened)"
            continue
        if session is not None and matched["session"] != session:
            yield f"{where} is not in the session's own directory (not opened)"
            continue
        problem = _file_problem(root_fd, root, matched["session"], matched["name"], entry)
        if problem is not None:
            yield f"{where} {problem}"


def _well_formed(entry: dict[str, Any]) -> bool:
    size, digest = entry.get("size"), entry.get("sha256")
    return (
        isinstance(entry.get("file"), str)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
        and isinstance(digest, str)
        and _HEX64.fullmatch(digest) is not None
    )


def _session_of(file: object) -> str:
    if isinstance(file, str) and SESSION_ID.fullmatch(file.split("/", 1)[0]):
        return file.split("/", 1)[0]
    return "?"


def _shown(file: object) -> str:
    """``file`` for a problem line: never more than one line, never very long."""
    if isinstance(file, str) and RECORDING_FILE.fullmatch(file):
        return file
    text = repr(file)
    return text if len(text) <= 120 else f"{text[:117]}..."


def _file_problem(
    root_fd: int | None, root: Path, session: str, name: str, entry: dict[str, Any]
) -> str | None:
    if root_fd is None:
        return f"is missing (no recordings directory {root})"
    fd = _open_recording(root_fd, session, name)
    if isinstance(fd, str):
        return fd
    try:
        return _content_problem(fd, entry["size"], entry["sha256"])
    except OSError as exc:
        return f"cannot be read: {_why(exc)}"
    finally:
        os.close(fd)


_DIRECTORY_PROBLEMS = {
    errno.ENOENT: "is missing (so is its session's directory)",
    errno.ELOOP: "is not read: its session's directory is a symbolic link (never followed)",
    errno.ENOTDIR: "is not read: its session's directory is no directory",
}
_FILE_PROBLEMS = {errno.ENOENT: "is missing", errno.ELOOP: "is a symbolic link (never followed)"}


def _open_recording(root_fd: int, session: str, name: str) -> int | str:
    """The file opened for reading, or what keeps it from being read."""
    try:
        dir_fd = os.open(session, _DIRECTORY, dir_fd=root_fd)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR and _is_link(root_fd, session):  # O_NOFOLLOW|O_DIRECTORY on a link
            return _DIRECTORY_PROBLEMS[errno.ELOOP]
        return _DIRECTORY_PROBLEMS.get(exc.errno or 0, f"cannot be read: {_why(exc)}")
    try:
        return os.open(name, _FILE, dir_fd=dir_fd)
    except OSError as exc:
        return _FILE_PROBLEMS.get(exc.errno or 0, f"cannot be read: {_why(exc)}")
    finally:
        os.close(dir_fd)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _why(exc: OSError) -> str:
    return " ".join((exc.strerror or type(exc).__name__).split())


def _content_problem(fd: int, size: int, digest: str) -> str | None:
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode):
        return "is not a regular file"
    if found.st_size != size:
        change = "cut short" if found.st_size < size else "added to"
        return f"has {found.st_size} bytes but the audit record says {size} ({change}?)"
    hashed = hashlib.sha256()
    read = 0
    while block := os.read(fd, _BLOCK):
        hashed.update(block)
        read += len(block)
    if read != size:
        return f"has {read} bytes but the audit record says {size} (changed while read?)"
    if hashed.hexdigest() != digest:
        return "differs from the audit record: its SHA-256 is not the one recorded (edited?)"
    return None
