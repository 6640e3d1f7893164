"""The SSH gateway as a service: its listener, its host identity, and the watcher that ends access.

``Gateway(runtime)`` needs only a broker runtime (database, policy, CA, clock), so it runs inside
``jitgate server`` (each worker its own listener on a shared ``SO_REUSEPORT`` port) and could as
well run as a process of its own next to the targets, on the same database.

The watcher asks the database, every ``gateway_poll_seconds`` (0.25 s by default) and in one query
for all of this process's sessions, whether each session's grant is still in force and whether an
admin has ended it, so a revoke or a kill made by any broker process ends the session within a
second. The grant's end is also kept here, so expiry ends a session on time even while the
database cannot be read; and if the database stays unreadable for ``BLIND_LIMIT`` seconds every
session ends, since nobody could then tell whether its grant was revoked (fail closed).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from jitgate.auth.throttle import FailureThrottle
from jitgate.errors import InvalidInput, JitgateError, ProviderError
from jitgate.gateway import hostkey, onward
from jitgate.gateway.recording import RecordingFailed, SessionRecordings
from jitgate.gateway.server import GatewayConnection
from jitgate.providers.ssh.provider import SshCertificateProvider
from jitgate.runtime import Runtime
from jitgate.workflow import sessions

log = logging.getLogger("jitgate.gateway")
T = TypeVar("T")
HEARTBEAT_SECONDS = 5.0
BLIND_LIMIT = 10.0
WILDCARDS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - names to refuse, not to bind


def host_names(listen: str, names: list[str], public: str | None) -> list[str]:
    """What the host certificate names: the configured names, else the host clients connect to."""
    if names:
        return names
    host = (public or listen).rpartition(":")[0].strip("[]")
    if host in WILDCARDS:
        raise InvalidInput(
            "the gateway listens on every address: set JITGATE_GATEWAY_NAMES to the names clients use"
        )
    return [host]


class Blindness:
    """How long this gateway has been unable to read its sessions' grants.

    Past ``limit`` seconds without one good read nobody can tell whether a grant was revoked
    meanwhile, so every session must end (fail closed).
    """

    def __init__(self, limit: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._monotonic = monotonic
        self._since: float | None = None

    def failed(self) -> bool:
        """A read failed; True once reads have failed for ``limit`` seconds."""
        now = self._monotonic()
        if self._since is None:
            self._since = now
        return now - self._since >= self._limit

    def recovered(self) -> None:
        self._since = None


class _NoRecordings(SessionRecordings):
    """Stands in until a connection has a session id; opening a recording there fails closed."""

    def __init__(self) -> None:
        """Nothing is made on disk."""

    def close_all(self) -> list[Any]:
        return []

    def flush(self) -> None:
        return None


class Gateway:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.ctx = runtime.ctx
        self.id = f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.recordings_root: Path = self.settings.recordings_dir
        self.no_recordings: SessionRecordings = _NoRecordings()
        # Its own, not the HTTP side's: a flood here must not lock an address out of the API.
        self.key_failures = FailureThrottle(
            limit=self.settings.auth_failures_per_source,
            window_seconds=self.settings.auth_failure_window_seconds,
        )
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jitgate-gateway")
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._host: hostkey.HostIdentity | None = None
        self._key: asyncssh.SSHKey | None = None
        self._names: list[str] = []
        self._connections: set[GatewayConnection] = set()
        self._signing_in: set[GatewayConnection] = set()
        self._watched: dict[str, GatewayConnection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._blindness = Blindness(BLIND_LIMIT)
        self._ca_keys: list[asyncssh.SSHKey] = []
        self._ca_keys_at = 0.0

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def provider(self) -> SshCertificateProvider:
        found = self.ctx.providers.get("ssh")
        if not isinstance(found, SshCertificateProvider):
            raise ProviderError("the SSH certificate authority is not configured")
        return found

    async def start(self) -> None:
        listen = self.settings.gateway_host_port
        if listen is None or self.settings.gateway_listen is None:
            raise InvalidInput("no address for the gateway (JITGATE_GATEWAY_LISTEN)")
        self._names = host_names(
            self.settings.gateway_listen, self.settings.gateway_names, self.settings.gateway_public_address
        )
        self._key = await self.run(hostkey.load_or_create_key, self.settings.data_dir / "gateway")
        self._host = await self.run(
            hostkey.certify, self._key, self.provider, self._names, self.ctx.clock.now()
        )
        host, port = listen
        try:
            self._acceptor = await asyncssh.listen(
                host,
                port,
                server_factory=functools.partial(GatewayConnection, self),
                server_host_keys=[self._key],
                server_host_certs=[self._host.certificate],
                encryption_algs=list(onward.CIPHERS),
                reuse_address=True,
                reuse_port=True,
                agent_forwarding=False,
                x11_forwarding=False,
                allow_pty=True,
                line_editor=False,
                encoding=None,
                login_timeout=self.settings.gateway_login_timeout_seconds,
                keepalive_interval=30,
                allow_scp=False,
                config=[],
            )
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        log.info("ssh gateway on %s:%d as %s", host, port, ", ".join(self._names))

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        for connection in list(self._connections):
            connection.end("the gateway is stopping")
        if self._watcher is not None:
            self._watcher.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        self._executor.shutdown(wait=True, cancel_futures=False)

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "signing_in": len(self._signing_in),
            "connections": len(self._connections),
            "sessions": len(self._watched),
        }

    # -- what connections use ---------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work (the database, signing) off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def spawn(self, work: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("gateway background work failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wall(self) -> float:
        return time.time()

    def admit(self, connection: GatewayConnection) -> bool:
        """Take a new connection while it signs in, within the cap on those.

        Connections still signing in have a cap of their own (like sshd's ``MaxStartups``) and
        ``gateway_login_timeout_seconds`` to sign in, so idle sockets can never take the places
        of people signed in.
        """
        if len(self._signing_in) >= self.settings.gateway_max_startups:
            log.warning("too many connections signing in: refusing %s", connection.source)
            return False
        self._signing_in.add(connection)
        return True

    def signed_in(self, connection: GatewayConnection) -> bool:
        """Move a connection that signed in to the signed-in ones, within ``gateway_max_sessions``."""
        self._signing_in.discard(connection)
        if len(self._connections) >= self.settings.gateway_max_sessions:
            log.warning("gateway full (%d sessions): refusing %s", len(self._connections), connection.source)
            return False
        self._connections.add(connection)
        return True

    def watch(self, connection: GatewayConnection) -> None:
        if connection.session_id is None:
            return
        self._watched[connection.session_id] = connection

    def unwatch(self, connection: GatewayConnection) -> None:
        self._connections.discard(connection)
        self._signing_in.discard(connection)
        if connection.session_id is not None:
            self._watched.pop(connection.session_id, None)

    def host_ca_keys(self) -> list[asyncssh.SSHKey]:
        if time.monotonic() - self._ca_keys_at > 1.0:
            self._ca_keys = onward.host_ca_keys(self.provider, self.ctx.clock.now())
            self._ca_keys_at = time.monotonic()
        return self._ca_keys

    # -- the watcher ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        poll = self.settings.gateway_poll_seconds
        last_beat = 0.0
        while True:
            await asyncio.sleep(poll)
            try:
                await self._check()
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS and self._watched:
                    await self.run(sessions.heartbeat, self.ctx, self.id, list(self._watched))
                    last_beat = time.monotonic()
                await self._renew_host_certificate()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the gateway watcher failed a round")

    async def _check(self) -> None:
        now = self.ctx.clock.now()
        watched = dict(self._watched)
        for connection in watched.values():
            self._flush(connection)
            if connection.expires_at is not None and now >= connection.expires_at:
                connection.end(f"grant {self._grant_of(connection)} has expired; access ends")
        if not watched:
            self._blindness.recovered()
            return
        try:
            found = await self.run(sessions.watch, self.ctx, list(watched))
        except JitgateError as exc:
            self._blind(watched, exc)
            return
        self._blindness.recovered()
        warn = self.settings.gateway_warn_seconds
        for session_id, connection in watched.items():
            seen = found.get(session_id)
            if seen is None:
                connection.end("the session is no longer on record; access ends")
                continue
            if seen.close_reason is not None:
                connection.end(f"{seen.close_reason}; access ends")
                continue
            connection.expires_at = seen.expires_at
            self._maybe_warn(connection, seen.expires_at, now, warn)

    def _blind(self, watched: dict[str, GatewayConnection], exc: JitgateError) -> None:
        if self._blindness.failed():
            log.error(
                "the database has been unreadable for %.0f s: ending every gateway session", BLIND_LIMIT
            )
            for connection in watched.values():
                connection.end("the broker cannot confirm the grant is still in force; access ends")
        else:
            log.warning("cannot check gateway sessions: %s", exc.message)

    @staticmethod
    def _grant_of(connection: GatewayConnection) -> str:
        return connection.plan.grant.id if connection.plan is not None else "?"

    def _maybe_warn(
        self, connection: GatewayConnection, expires_at: datetime, now: datetime, warn: float
    ) -> None:
        left = (expires_at - now).total_seconds()
        if warn <= 0 or left > warn or connection.warned_for == expires_at or not connection.interactive:
            return
        connection.warned_for = expires_at
        minutes = max(1, round(left / 60))
        grant = self._grant_of(connection)
        connection.announce(
            f"access through grant {grant} ends in about {minutes} min "
            f"({expires_at:%H:%M:%S} UTC); `jitgate extend {grant}` asks for more"
        )

    def _flush(self, connection: GatewayConnection) -> None:
        try:
            connection.recordings.flush()
        except RecordingFailed as exc:
            connection.recording_failed(exc)

    async def _renew_host_certificate(self) -> None:
        now = self.ctx.clock.now()
        if self._host is None or self._key is None or self._acceptor is None or not self._host.due(now):
            return
        self._host = await self.run(hostkey.certify, self._key, self.provider, self._names, now)
        self._acceptor.update(server_host_keys=[self._key], server_host_certs=[self._host.certificate])
