"""Relaying one channel between the user's connection to the gateway and the gateway's to the target.

A session channel (shell, exec, the SFTP subsystem) is opened at the target the way the user
asked for it (the same command, terminal type, size and modes), and from then on bytes flow both
ways untouched: window changes, signals and breaks go on to the target; the target's exit status
or signal comes back. Back-pressure is passed through: when one side cannot take more, reading
from the other side pauses, so a fast sender never fills the gateway's memory.

Every byte is shown to the channel's recorder (``gateway/recording``) before it is passed on. A
recorder that cannot write ends the whole session (fail closed): nothing is relayed unrecorded.
What the relay needs from its connection is the small ``Link`` protocol; the server implements it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import asyncssh

from jitgate.gateway.recording import RecordingFailed, SessionRecordings

if TYPE_CHECKING:
    from jitgate.gateway.forward import ForwardRelay

STDERR = asyncssh.EXTENDED_DATA_STDERR
ANNOUNCE = "jitgate: "
EARLY_LIMIT = 256 * 1024


class Refused(Exception):
    """The connection goes nowhere; ``str`` is the one line the user is shown."""


class Link(Protocol):
    """The connection a channel belongs to."""

    recordings: SessionRecordings
    exec_record_bytes: int

    async def onward(self) -> asyncssh.SSHClientConnection:
        """The connection to the target once it is up; raises ``Refused`` if there is none."""
        ...

    def next_channel(self) -> int: ...

    def count(self, *, sent: int = 0, received: int = 0) -> None: ...

    def channel_opened(self, relay: SessionRelay) -> None: ...

    def channel_closed(self, relay: SessionRelay, exit_status: int | None) -> None: ...

    def recording_failed(self, exc: RecordingFailed) -> None: ...

    def forward_closed(self, relay: ForwardRelay) -> None: ...


Channel = asyncssh.SSHServerChannel[bytes] | asyncssh.SSHClientChannel[bytes] | asyncssh.SSHTCPChannel[bytes]


def pass_eof(chan: Channel | None) -> None:
    """The other side sent EOF: send it on, unless this side is already closing."""
    if chan is not None and not chan.is_closing():
        chan.write_eof()


def hold(chan: Channel | None, paused: bool) -> None:
    """Stop (or go on) reading from ``chan`` while the other side cannot take more."""
    if chan is not None and not chan.is_closing():
        if paused:
            chan.pause_reading()
        else:
            chan.resume_reading()


def line(message: str, *, pty: bool) -> bytes:
    return f"{ANNOUNCE}{message}{chr(13) if pty else ''}\n".encode()


class SessionRelay(asyncssh.SSHServerSession[bytes]):
    """The user's side of a session channel."""

    def __init__(self, link: Link, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._link = link
        self._monotonic = monotonic
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._onward: asyncssh.SSHClientChannel[bytes] | None = None
        self._pty: tuple[str, tuple[int, int, int, int], dict[int, int]] | None = None
        self.kind = "shell"
        self._recorded_as = "shell"
        self._command: str | None = None
        self._recorder: Any = None
        self._started = 0.0
        self.channel = 0
        self._closed = False
        self._pending_eof = False
        self._early: list[bytes] = []
        self._early_size = 0

    # -- requests before the channel starts -------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        self._pty = (term_type, term_size, dict(term_modes))
        return True

    def shell_requested(self) -> bool:
        self.kind = "shell"
        return True

    def exec_requested(self, command: str) -> bool:
        self.kind, self._command = "exec", command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self.kind = "sftp"
        return True

    @property
    def interactive(self) -> bool:
        return self._pty is not None

    def session_started(self) -> None:
        asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        chan = self._chan
        if chan is None:
            return
        try:
            onward = await self._link.onward()
        except Refused as refused:
            self.refuse(str(refused))
            return
        self.channel = self._link.next_channel()
        self._started = self._monotonic()
        try:
            self._recorder = self._new_recorder()
        except RecordingFailed as exc:
            self.refuse(str(exc))
            self._link.recording_failed(exc)
            return
        term_type, term_size, term_modes = self._pty or (None, (0, 0, 0, 0), {})
        try:
            self._onward, _ = await onward.create_session(
                lambda: _TargetSide(self),
                self._command if self.kind == "exec" else None,
                subsystem="sftp" if self.kind == "sftp" else None,
                env=self._environment(chan),
                request_pty=self._pty is not None,
                term_type=term_type,
                term_size=term_size,
                term_modes=term_modes,
                encoding=None,
            )
        except (asyncssh.Error, OSError) as exc:
            reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
            self.refuse(f"the target refused the {self.kind}: {reason}")
            self._finish(None)
            return
        self._link.channel_opened(self)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data, None)
        chan.resume_reading()  # delivers, in order, whatever waited in the channel
        if self._pending_eof:  # the user's EOF came after all of it
            self._onward.write_eof()

    @staticmethod
    def _environment(chan: asyncssh.SSHServerChannel[bytes]) -> dict[bytes | str, bytes | str]:
        """What the client sent with ``SendEnv``; the target's ``AcceptEnv`` decides what it keeps."""
        return dict(chan.get_environment().items())

    def _new_recorder(self) -> Any:
        """The channel's recorder. A command run on a terminal is as interactive as a shell (it
        may well be one: ``ssh -t target bash``), so it is recorded whole as a cast, never under
        the exec recording's cap."""
        recordings, at = self._link.recordings, time.time()
        if self.kind == "exec" and self._pty is None:
            self._recorded_as = "exec"
            return recordings.exec(
                self.channel, self._command or "", cap_bytes=self._link.exec_record_bytes, timestamp=at
            )
        if self.kind == "sftp":
            self._recorded_as = "sftp"
            return recordings.sftp(self.channel, timestamp=at)
        self._recorded_as = "shell"
        term_type, size = (self._pty[0], self._pty[1]) if self._pty else ("", (80, 24, 0, 0))
        return recordings.shell(
            self.channel,
            width=size[0] or 80,
            height=size[1] or 24,
            term=term_type,
            command=self._command,
            timestamp=at,
        )

    def refuse(self, message: str) -> None:
        """Tell the user why in one line and end the channel with status 1."""
        self.announce(message)
        if self._chan is not None:
            self._chan.exit(1)

    def announce(self, message: str) -> None:
        """A line to the user (a warning before the grant ends) without ending anything."""
        if self._chan is not None and not self._chan.is_closing():
            self._chan.write_stderr(line(message, pty=self._pty is not None))

    def end(self, message: str) -> None:
        """End this channel now, telling the user why."""
        self.refuse(message)
        if self._onward is not None:
            self._onward.close()
        self._finish(None)

    # -- the user's side → the target -------------------------------------------------------------

    def _at(self) -> float:
        return self._monotonic() - self._started

    def _record(self, method: str, *args: Any) -> bool:
        if self._recorder is None:
            return True
        try:
            getattr(self._recorder, method)(self._at(), *args)
        except RecordingFailed as exc:
            self._link.recording_failed(exc)
            return False
        return True

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._onward is None:
            self._hold(data)
            return
        self._link.count(sent=len(data))
        method = {"shell": "input", "exec": "stdin", "sftp": "from_client"}[self._recorded_as]
        if self._record(method, data):
            self._onward.write(data)

    def _hold(self, data: bytes) -> None:
        """Keep what the user sends before the target's side is open, up to ``EARLY_LIMIT``.

        (The channel's own pause only works once asyncssh has started reading it.) Past the
        limit reading pauses, and the rest waits in the channel, bounded by its window.
        """
        self._early.append(data)
        self._early_size += len(data)
        if self._early_size >= EARLY_LIMIT and self._chan is not None:
            self._chan.pause_reading()

    def eof_received(self) -> bool:
        if self._onward is None:
            self._pending_eof = True
        else:
            self._onward.write_eof()
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self._onward is not None:
            if self._recorded_as == "shell":
                self._record("resize", width, height)
            self._onward.change_terminal_size(width, height, pixwidth, pixheight)

    def signal_received(self, signal: str) -> None:
        if self._onward is not None:
            self._onward.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self._onward is not None:
            self._onward.send_break(msec)
        return True

    def pause_writing(self) -> None:
        hold(self._onward, True)

    def resume_writing(self) -> None:
        hold(self._onward, False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._onward is not None:
            self._onward.close()
        self._finish(None)

    # -- the target → the user's side -------------------------------------------------------------

    def from_target(self, data: bytes, datatype: asyncssh.DataType) -> None:
        chan = self._chan
        if chan is None or chan.is_closing():
            return
        self._link.count(received=len(data))
        if self._recorded_as == "exec":
            method = "stderr" if datatype == STDERR else "stdout"
        else:
            method = {"shell": "output", "sftp": "from_server"}[self._recorded_as]
        if not self._record(method, data):
            return
        if datatype == STDERR:
            chan.write_stderr(data)
        else:
            chan.write(data)

    def target_eof(self) -> None:
        pass_eof(self._chan)

    def target_backed_up(self, paused: bool) -> None:
        hold(self._chan, paused)

    def target_closed(self, status: int | None, signal: tuple[str, bool, str] | None) -> None:
        chan = self._chan
        if chan is not None:  # after an EOF the channel counts as closing, but still takes the status
            if signal is not None:
                chan.exit_with_signal(*signal)
            elif status is not None:
                chan.exit(status)
            else:
                chan.close()
        self._finish(status)

    def _finish(self, status: int | None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._recorder is not None:
            try:
                self._recorder.close(status) if self._recorded_as != "sftp" else self._recorder.close()
            except RecordingFailed as exc:
                self._link.recording_failed(exc)
        self._link.channel_closed(self, status)


class _TargetSide(asyncssh.SSHClientSession[bytes]):
    """The target's side of a session channel: everything goes back to the user's side."""

    def __init__(self, relay: SessionRelay) -> None:
        self._relay = relay
        self._status: int | None = None
        self._signal: tuple[str, bool, str] | None = None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._relay.from_target(data, datatype)

    def eof_received(self) -> bool:
        self._relay.target_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self._status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self._signal = (signal, core_dumped, msg)

    def pause_writing(self) -> None:
        self._relay.target_backed_up(True)

    def resume_writing(self) -> None:
        self._relay.target_backed_up(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.target_closed(self._status, self._signal)
