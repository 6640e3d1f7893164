"""One recording file: created once, private, hashed exactly as written, failing closed.

Every recorder of ``recording.py`` writes through a ``RecordingFile``. It is created with
``O_CREAT|O_EXCL|O_NOFOLLOW`` and mode 0600 (never a file that was already there, never through a
symbolic link), buffers up to ``BUFFER_BYTES`` and computes SHA-256 and size over the bytes the
kernel accepted, as it accepts them: after a failure part-way the facts still describe the file on
disk byte for byte, so ``audit verify`` checks a cut-short recording like any other. Any ``OSError``
becomes ``RecordingFailed`` with one line, and the file takes nothing more.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from jitgate.errors import JitgateError

BUFFER_BYTES = 64 * 1024
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class RecordingFailed(JitgateError):
    """The recording cannot be written; the session must end (fail closed)."""

    code = "recording_failed"


def failure(exc: OSError) -> RecordingFailed:
    """The one-line ``RecordingFailed`` for an ``OSError``."""
    why = exc.strerror or str(exc) or type(exc).__name__
    return RecordingFailed(f"the session recording cannot be written: {' '.join(why.split())}")


@dataclass(frozen=True, slots=True)
class RecordingFacts:
    """What the audit record says of one channel's recording.

    ``file`` is relative to the recordings root, POSIX, ``<session_id>/<channel>-<kind>.<ext>``;
    ``sha256`` and ``size`` are those of the file as written; ``truncated`` says that something
    of the channel is not in it (an exec cap reached, an SFTP stream that could not be parsed,
    or a write that failed).
    """

    channel: int
    kind: str
    file: str
    sha256: str
    size: int
    truncated: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "kind": self.kind,
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "truncated": self.truncated,
        }


def json_line(value: object) -> bytes:
    """``value`` as one line of JSON in UTF-8.

    Text from the wire is decoded with ``surrogateescape`` (each byte that is not UTF-8 becomes
    U+DC80 + byte); such a code point has no UTF-8 form, so it is written as the JSON escape
    ``\\udcXX``, from which ``json.loads(...).encode("utf-8", "surrogateescape")`` gives the byte
    back. Valid UTF-8 never decodes to those code points, so the escape is unambiguous.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8", "backslashreplace") + b"\n"


class RecordingFile:
    """A file under an open directory, written with buffering and hashed as it is written."""

    def __init__(self, dir_fd: int, name: str) -> None:
        try:
            self._fd: int | None = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise failure(exc) from None
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self.size = 0
        self.failed: RecordingFailed | None = None

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        """Buffer ``data``; write the buffer out once it holds ``BUFFER_BYTES``."""
        self._usable()
        self._buffer += data
        if len(self._buffer) >= BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered to the file (not necessarily to the disk); fails once the
        file has been removed (its directory, say), which the gateway's flushes notice soon."""
        fd = self._usable()
        view = memoryview(self._buffer)
        done = 0
        try:
            while done < len(view):
                n = os.write(fd, view[done:])
                self._hash.update(view[done : done + n])
                self.size += n
                done += n
            removed = os.fstat(fd).st_nlink == 0
        except OSError as exc:
            self.failed = failure(exc)
            raise self.failed from None
        finally:
            view.release()
            del self._buffer[:done]
        if removed:  # writes to a file nobody can open any more record nothing
            self.failed = RecordingFailed("the session recording cannot be written: its file was removed")
            raise self.failed

    def close(self) -> bool:
        """Write the rest out, sync and close; never raises. True if every byte was written."""
        fd = self._fd
        if fd is None:
            return self.failed is None
        try:
            if self.failed is None:
                self.flush()
                os.fsync(fd)
        except RecordingFailed:
            pass
        except OSError as exc:
            self.failed = failure(exc)
        finally:
            self._fd = None
            self._buffer.clear()
            try:
                os.close(fd)
            except OSError as exc:
                self.failed = self.failed or failure(exc)
        return self.failed is None

    def _usable(self) -> int:
        if self.failed is not None:
            raise self.failed
        if self._fd is None:
            raise RecordingFailed("the session recording cannot be written: it is closed")
        return self._fd
