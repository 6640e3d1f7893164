"""The formats of a channel's recording, one recorder per kind of channel.

Every method takes ``at``, the seconds since the channel started as the caller measured them
(nothing here reads a clock); times that are not finite or go backwards are taken as the last
time seen, so every file's times never decrease. Data is bytes as relayed.

- shell (``.cast``): asciicast v2 exactly as asciinema documents it, playable by its player. A
  header ``{"version": 2, "width", "height", "timestamp", "env": {"TERM"}, "command"?}``, then
  ``[t, "o", text]`` output, ``[t, "i", text]`` input and ``[t, "r", "WxH"]`` resizes. Text is
  decoded incrementally, so a UTF-8 sequence split across chunks arrives whole; bytes that are
  not UTF-8 become U+FFFD (the format holds text only). The exit status is not in the file (the
  format has no place for it): the gateway puts it into the audit record.
- exec (``.jsonl``): a header ``{"version": 1, "kind": "exec", "command", "timestamp",
  "cap_bytes"}``, events ``[t, "i"|"o"|"e", text]`` (stdin, stdout, stderr), and a last line
  ``{"exit_status", "bytes": {"in", "out", "err"}, "stored": {...}, "truncated"}``. At most
  ``cap_bytes`` of each direction are stored; bytes past that are counted only. Binary output is
  kept exactly: bytes that are not UTF-8 are written as ``\\udcXX`` escapes (``json_line``), so
  ``text.encode("utf-8", "surrogateescape")`` gives back the bytes of a direction.
- sftp (``.jsonl``): a header ``{"version": 1, "kind": "sftp", "timestamp"}``, one line
  ``{"t", "op", ...}`` per operation (``sftp_ops``), and a last line ``{"bytes": {"from_client",
  "from_server"}, "unparseable"}``. File contents are never stored.
- forward (``.jsonl``): a header ``{"version": 1, "kind": "forward", "dest_host", "dest_port",
  "orig_host", "orig_port", "timestamp"}`` and a last line ``{"bytes": {"sent", "received"},
  "duration"}``; ``sent`` is what went from the client to the destination.

A recorder whose file failed raises ``RecordingFailed`` from every method but ``close``, which
always returns the facts (marked truncated when anything could not be written) and never raises.
"""

from __future__ import annotations

import codecs
import contextlib
import math
from typing import Any

from jitgate.gateway.recording_file import RecordingFacts, RecordingFailed, RecordingFile, json_line
from jitgate.gateway.sftp_ops import SftpTracker

_UTF8 = codecs.getincrementaldecoder("utf-8")
_CLOSED = "the session recording cannot be written: the channel's recording is closed"


def _seconds(value: float) -> float:
    """A Unix time as written: JSON has no form for NaN or infinity."""
    return round(value, 6) if math.isfinite(value) else 0.0


class Recorder:
    """What the recorders share: the file, the facts, a clock that never goes back."""

    kind = ""

    def __init__(self, file: RecordingFile, channel: int, name: str) -> None:
        self._file = file
        self.channel = channel
        self.name = name
        self._last = 0.0
        self._truncated = False
        self._facts: RecordingFacts | None = None

    @property
    def closed(self) -> bool:
        return self._facts is not None

    @property
    def failed(self) -> RecordingFailed | None:
        return self._file.failed

    def flush(self) -> None:
        if self._facts is None:
            self._file.flush()

    def facts(self) -> RecordingFacts:
        """The final facts once closed; before that, those of what is written so far."""
        if self._facts is not None:
            return self._facts
        return self._make_facts(self._truncated or self._file.failed is not None)

    def _make_facts(self, truncated: bool) -> RecordingFacts:
        return RecordingFacts(
            self.channel, self.kind, self.name, self._file.sha256, self._file.size, truncated
        )

    def _time(self, at: float) -> float:
        if math.isfinite(at) and at > self._last:
            self._last = at
        return round(self._last, 6)

    def _usable(self) -> None:
        """Refuse anything more once the file failed or the recording was closed."""
        if self._file.failed is not None:
            raise self._file.failed
        if self._facts is not None:
            raise RecordingFailed(_CLOSED)

    def _write(self, value: object) -> None:
        self._usable()
        self._file.write(json_line(value))

    def _event(self, at: float, code: str, text: str) -> None:
        """An event line ``[t, code, text]``; nothing for no text (a sequence not yet complete)."""
        if text:
            self._write([self._time(at), code, text])

    def _finish(self, last: object | None) -> RecordingFacts:
        """Write ``last`` (unless the file failed), close, and keep the facts."""
        if self._facts is not None:
            return self._facts
        if last is not None and self._file.failed is None:
            with contextlib.suppress(RecordingFailed):  # the facts say truncated
                self._file.write(json_line(last))
        whole = self._file.close()
        self._facts = self._make_facts(self._truncated or not whole)
        return self._facts


class ShellRecorder(Recorder):
    """An interactive session as asciicast v2."""

    kind = "shell"

    def __init__(
        self,
        file: RecordingFile,
        channel: int,
        name: str,
        *,
        width: int,
        height: int,
        term: str,
        command: str | None,
        timestamp: float,
    ) -> None:
        super().__init__(file, channel, name)
        header: dict[str, Any] = {
            "version": 2,
            "width": width if width > 0 else 80,  # 0 (size in pixels only) would not play
            "height": height if height > 0 else 24,
            "timestamp": int(_seconds(timestamp)),
            "env": {"TERM": term} if term else {},
        }
        if command is not None:
            header["command"] = command
        self._out = _UTF8(errors="replace")
        self._in = _UTF8(errors="replace")
        self._write(header)

    def output(self, at: float, data: bytes) -> None:
        self._usable()
        self._event(at, "o", self._out.decode(data))

    def input(self, at: float, data: bytes) -> None:
        self._usable()
        self._event(at, "i", self._in.decode(data))

    def resize(self, at: float, width: int, height: int) -> None:
        self._event(at, "r", f"{width}x{height}")

    def close(self, exit_status: int | None) -> RecordingFacts:
        """End the cast (the exit status goes into the audit record, not the file)."""
        if self._facts is None and self._file.failed is None:
            with contextlib.suppress(RecordingFailed):  # the facts say truncated
                self._event(self._last, "o", self._out.decode(b"", final=True))
                self._event(self._last, "i", self._in.decode(b"", final=True))
        return self._finish(None)


class _Direction:
    __slots__ = ("decoder", "seen", "stored")

    def __init__(self) -> None:
        self.decoder = _UTF8(errors="surrogateescape")
        self.seen = 0
        self.stored = 0


class ExecRecorder(Recorder):
    """A command's stdin, stdout and stderr, each stored up to a cap."""

    kind = "exec"

    def __init__(
        self, file: RecordingFile, channel: int, name: str, *, command: str, cap_bytes: int, timestamp: float
    ) -> None:
        super().__init__(file, channel, name)
        self._cap = max(0, cap_bytes)
        self._streams = {"i": _Direction(), "o": _Direction(), "e": _Direction()}
        self._write(
            {
                "version": 1,
                "kind": "exec",
                "command": command,
                "timestamp": _seconds(timestamp),
                "cap_bytes": self._cap,
            }
        )

    def stdin(self, at: float, data: bytes) -> None:
        self._stream(at, "i", data)

    def stdout(self, at: float, data: bytes) -> None:
        self._stream(at, "o", data)

    def stderr(self, at: float, data: bytes) -> None:
        self._stream(at, "e", data)

    def close(self, exit_status: int | None) -> RecordingFacts:
        if self._facts is None and self._file.failed is None:
            with contextlib.suppress(RecordingFailed):
                for code, each in self._streams.items():
                    self._event(self._last, code, each.decoder.decode(b"", final=True))
        s = self._streams
        self._truncated = self._truncated or any(each.seen > each.stored for each in s.values())
        return self._finish(
            {
                "exit_status": exit_status,
                "bytes": {"in": s["i"].seen, "out": s["o"].seen, "err": s["e"].seen},
                "stored": {"in": s["i"].stored, "out": s["o"].stored, "err": s["e"].stored},
                "truncated": self._truncated,
            }
        )

    def _stream(self, at: float, code: str, data: bytes) -> None:
        self._usable()
        each = self._streams[code]
        each.seen += len(data)
        room = self._cap - each.stored
        if room <= 0:
            return
        part = data[:room]
        each.stored += len(part)
        # At the cap, a sequence cut in two is written as escapes rather than held back forever.
        self._event(at, code, each.decoder.decode(part, final=each.stored >= self._cap))


class SftpRecorder(Recorder):
    """An SFTP channel as the operations it carried."""

    kind = "sftp"

    def __init__(self, file: RecordingFile, channel: int, name: str, *, timestamp: float) -> None:
        super().__init__(file, channel, name)
        self._tracker = SftpTracker()
        self._write({"version": 1, "kind": "sftp", "timestamp": _seconds(timestamp)})

    def from_client(self, at: float, data: bytes) -> None:
        self._usable()
        self._operations(at, self._tracker.from_client(data))

    def from_server(self, at: float, data: bytes) -> None:
        self._usable()
        self._operations(at, self._tracker.from_server(data))

    def close(self) -> RecordingFacts:
        if self._facts is None and self._file.failed is None:
            with contextlib.suppress(RecordingFailed):
                self._operations(self._last, self._tracker.finish())
        tracker = self._tracker
        self._truncated = self._truncated or tracker.unparseable is not None
        return self._finish(
            {
                "bytes": {"from_client": tracker.bytes_from_client, "from_server": tracker.bytes_from_server},
                "unparseable": tracker.unparseable,
            }
        )

    def _operations(self, at: float, operations: list[dict[str, Any]]) -> None:
        for operation in operations:
            self._write({"t": self._time(at), **operation})


class ForwardRecorder(Recorder):
    """A forwarded TCP connection: where to, from where, how many bytes each way, how long."""

    kind = "forward"

    def __init__(
        self,
        file: RecordingFile,
        channel: int,
        name: str,
        *,
        dest_host: str,
        dest_port: int,
        orig_host: str,
        orig_port: int,
        timestamp: float,
    ) -> None:
        super().__init__(file, channel, name)
        self._sent = 0
        self._received = 0
        self._write(
            {
                "version": 1,
                "kind": "forward",
                "dest_host": dest_host,
                "dest_port": dest_port,
                "orig_host": orig_host,
                "orig_port": orig_port,
                "timestamp": _seconds(timestamp),
            }
        )

    def sent(self, at: float, n: int) -> None:
        self._usable()
        self._time(at)
        self._sent += n

    def received(self, at: float, n: int) -> None:
        self._usable()
        self._time(at)
        self._received += n

    def close(self, *, at: float | None = None) -> RecordingFacts:
        """``at``, when given, is when the connection ended; else the duration ends at its last byte."""
        duration = self._time(at) if at is not None else round(self._last, 6)
        return self._finish({"bytes": {"sent": self._sent, "received": self._received}, "duration": duration})
