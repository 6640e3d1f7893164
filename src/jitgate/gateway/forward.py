"""Relaying one direct TCP forward (``ssh -L``) through the gateway.

The forward is opened at the target by its sshd, so it reaches what the target reaches, never the
gateway host's own services. Bytes are counted by the forward's recorder before they are passed
on, and back-pressure goes through both ways, as for session channels (``gateway/relay``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncssh

from jitgate.gateway.recording import RecordingFailed
from jitgate.gateway.relay import Link, hold, pass_eof


class ForwardRelay(asyncssh.SSHTCPSession[bytes]):
    """One direct TCP forward (``ssh -L``), opened from the target to its destination."""

    def __init__(
        self,
        link: Link,
        recorder: Any,
        onward: asyncssh.SSHTCPChannel[bytes],
        target_side: ForwardTarget,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target_side = target_side
        self._link = link
        self._recorder = recorder
        self.onward: asyncssh.SSHTCPChannel[bytes] | None = onward
        self._monotonic = monotonic
        self._started = monotonic()
        self._chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self._closed = False

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self._chan = chan
        self._target_side.attach(self)  # what the target sent meanwhile goes out now

    def _record(self, method: str, n: int) -> bool:
        try:
            getattr(self._recorder, method)(self._monotonic() - self._started, n)
        except RecordingFailed as exc:
            self._link.recording_failed(exc)
            return False
        return True

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.onward is not None and self._record("sent", len(data)):
            self._link.count(sent=len(data))
            self.onward.write(data)

    def eof_received(self) -> bool:
        if self.onward is not None:
            self.onward.write_eof()
        return True

    def pause_writing(self) -> None:
        hold(self.onward, True)

    def resume_writing(self) -> None:
        hold(self.onward, False)

    def from_target(self, data: bytes) -> None:
        if self._chan is not None and not self._chan.is_closing() and self._record("received", len(data)):
            self._link.count(received=len(data))
            self._chan.write(data)

    def target_eof(self) -> None:
        pass_eof(self._chan)

    def target_backed_up(self, paused: bool) -> None:
        hold(self._chan, paused)

    def end(self) -> None:
        if self._chan is not None:
            self._chan.close()
        self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.onward is not None:
            self.onward.close()
        if self._chan is not None:
            self._chan.close()
        if not self._closed:
            self._closed = True
            try:
                self._recorder.close()
            except RecordingFailed as exc2:
                self._link.recording_failed(exc2)
            self._link.forward_closed(self)


class ForwardTarget(asyncssh.SSHTCPSession[bytes]):
    """The target's side of a forward."""

    def __init__(self) -> None:
        self.relay: ForwardRelay | None = None
        # What came before the user's side was attached (bounded by the channel's window).
        self._early: list[bytes] = []
        self._early_eof = False
        self._lost = False

    def attach(self, relay: ForwardRelay) -> None:
        self.relay = relay
        for data in self._early:
            relay.from_target(data)
        if self._early_eof:
            relay.target_eof()
        self._early.clear()
        if self._lost:
            relay.end()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.relay is not None:
            self.relay.from_target(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool:
        if self.relay is not None:
            self.relay.target_eof()
        else:
            self._early_eof = True
        return True

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.target_backed_up(True)

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.target_backed_up(False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay is not None:
            self.relay.end()
        else:
            self._lost = True
