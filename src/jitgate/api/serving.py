"""How the broker's HTTP server holds connections: bounded in number, in time and in size.

uvicorn (with httptools) keeps a connection that never sends a byte for ever, lets a request head
or body arrive as slowly as the client likes, and lets httptools buffer a header of any length.
One unauthenticated client could so hold every descriptor of the process, and then ``/healthz``,
the database and the scheduler's audit files fail with it. This module closes that door at the
protocol, before any of the app runs:

- a connection whose request head is not complete ``header_timeout`` seconds after it was opened
  (or after the first byte of a later request on it) is answered 408 and closed;
- a request body not complete ``body_timeout`` seconds after its head is answered 408 and closed;
- a request head over ``max_header_bytes`` is answered 431 and closed;
- an idle keep-alive connection is closed after ``keep_alive_timeout`` seconds (uvicorn's own);
- a connection beyond ``max_connections`` open in this worker is answered 503 and closed at once,
  before anything of it is read or buffered.

At start the process's soft descriptor limit is raised to its hard limit, and the connection cap
is lowered, if need be, to leave ``RESERVED_DESCRIPTORS`` for everything that is not a client.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from jitgate.errors import InvalidInput
from jitgate.settings import Settings

log = logging.getLogger("jitgate.server")

RESERVED_DESCRIPTORS = 512
"""Descriptors kept free of clients: database pool, provider admin connections, the scheduler's
audit checkpoint and lock files, logs, webhooks, OIDC key fetches, the listening sockets."""


@dataclass(frozen=True)
class Bounds:
    header_timeout: float
    body_timeout: float
    keep_alive_timeout: float
    max_connections: int
    max_header_bytes: int


def raise_descriptor_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard not in (resource.RLIM_INFINITY, soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    return soft


def connection_cap(wanted: int, descriptor_limit: int) -> int:
    """``wanted``, or fewer if the descriptor limit would not leave ``RESERVED_DESCRIPTORS`` free."""
    room = descriptor_limit - RESERVED_DESCRIPTORS
    if room < 16:
        raise InvalidInput(
            f"the descriptor limit ({descriptor_limit}) leaves no room for connections; "
            f"raise it (ulimit -n, LimitNOFILE) to at least {RESERVED_DESCRIPTORS + 16}"
        )
    return min(wanted, room)


def bounds_for(settings: Settings, descriptor_limit: int) -> Bounds:
    cap = connection_cap(settings.http_max_connections, descriptor_limit)
    if cap < settings.http_max_connections:
        log.warning(
            "descriptor limit %d: at most %d connections per worker instead of %d",
            descriptor_limit,
            cap,
            settings.http_max_connections,
        )
    return Bounds(
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        keep_alive_timeout=settings.http_keep_alive_timeout_seconds,
        max_connections=cap,
        max_header_bytes=settings.http_max_header_bytes,
    )


def _canned(status: int, detail: str) -> bytes:
    title = HTTPStatus(status).phrase
    fields = f'"title":"{title}","status":{status},"code":"http_error","detail":"{detail}"'
    body = ('{"type":"about:blank",' + fields + "}").encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/problem+json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ]
    )


_FULL = _canned(503, "too many open connections; try again")
_HEAD_TIMEOUT = _canned(408, "the request head did not arrive in time")
_BODY_TIMEOUT = _canned(408, "the request body did not arrive in time")
_HEAD_TOO_LARGE = _canned(431, "request head too large")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, head and body deadlines, a head size limit.

    ``bounds`` is set on the subclass that ``protocol_class`` makes; one class per server.
    The body deadline runs from the end of the head, also for a request pipelined behind another
    (whose body uvicorn does not read until the first answer is sent); clients do not pipeline
    requests with bodies, and the default deadline is long beside the broker's answers.
    """

    bounds: Bounds

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.bounds.max_connections:
            # Not added to the server's connections, nothing read: one write and the descriptor
            # is free again.
            self._refused = True
            self.transport = transport
            transport.write(_FULL)
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.bounds.header_timeout, _HEAD_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Bytes of a head still incomplete after this chunk; a head completed within the chunk
            # is not counted, so a small head with a body in the same packet always passes.
            self._head_bytes += len(data)
            if self._head_bytes > self.bounds.max_header_bytes:
                self._refuse(_HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm(self.bounds.header_timeout, _HEAD_TIMEOUT)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        self._arm(self.bounds.body_timeout, _BODY_TIMEOUT)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, answer: bytes) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._refuse, answer)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, answer: bytes) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(answer)
        self.transport.close()


def protocol_class(bounds: Bounds) -> type[BoundedHttpToolsProtocol]:
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"bounds": bounds})


def process_bounds(settings: Settings) -> Bounds:
    """Raise this process's descriptor limit, then the bounds its server keeps within it."""
    return bounds_for(settings, raise_descriptor_limit())


def server_config(app: Any, bounds: Bounds, *, access_log: bool, **where: Any) -> uvicorn.Config:
    """The uvicorn configuration of one broker process; ``where`` is ``host``/``port`` or nothing."""
    return uvicorn.Config(
        app,
        http=protocol_class(bounds),
        # The broker serves no WebSockets; an upgraded connection would leave the count and timers.
        ws="none",
        # The peer address is the caller's address: a client cannot name another with a header.
        proxy_headers=False,
        timeout_keep_alive=bounds.keep_alive_timeout,  # type: ignore[arg-type]
        access_log=access_log,
        log_level="info",
        **where,
    )
