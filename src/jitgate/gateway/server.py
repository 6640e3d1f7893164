"""One user's connection to the gateway, from the first key offered to the audit record at its end.

A connection proves who it is with a registered key (``workflow/keys``); the user name says
where to go (``gateway/addressing``). Once signed in, the connection is *prepared* once: the
grant is checked, a certificate is minted for this connection alone, the session is recorded as
started, its recording directory made, and the target reached with its host certificate
verified (``gateway/onward``). Every channel the user opens waits for that and then either
relays (``gateway/relay``) or, if the connection goes nowhere, shows its one line and exits 1.

A connection ends when the user leaves, when the watcher (``gateway/service``) says its grant
ended or an admin killed it, when its recording cannot be written, or when the gateway stops.
Ending closes the target side first, so nothing more reaches the target, tells each open
channel why, and then records the session's end with the SHA-256 of every recording.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import asyncssh

from jitgate.domain.identity import Identity
from jitgate.errors import JitgateError, PolicyDenied, StorageUnavailable, TooManyFailures
from jitgate.gateway import onward
from jitgate.gateway.forward import ForwardRelay, ForwardTarget
from jitgate.gateway.recording import RecordingFailed, SessionRecordings
from jitgate.gateway.relay import Refused, SessionRelay
from jitgate.workflow import sessions
from jitgate.workflow.auth_failures import audit_throttled
from jitgate.workflow.keys import identity_for_key

if TYPE_CHECKING:
    from jitgate.gateway.service import Gateway

log = logging.getLogger("jitgate.gateway")
T = TypeVar("T")
ANONYMOUS = Identity(name="anonymous", source="gateway")
CLOSE_AFTER = 0.2
"""Seconds between telling the user why and dropping the connection, so the line gets out."""
REFUSED_LINGER = 5.0
"""Seconds a connection that goes nowhere stays, so that channels its client opens late say why."""
MAX_UNKNOWN_KEYS = 6
"""Unregistered keys one connection may offer before it is dropped (sshd's ``MaxAuthTries``):
each is a database read, and an outsider could otherwise offer keys for the whole sign-in time."""
MAX_CHANNELS = 128
"""Channels (sessions and forwards) one connection may hold open at once. Each holds a recording
file and a channel at the target, so without a bound one user could use up the gateway's files."""


class GatewayConnection(asyncssh.SSHServer):
    """asyncssh's server object for one connection; also the ``relay.Link`` of its channels."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._conn: asyncssh.SSHServerConnection | None = None
        self.source = "unknown"
        self._host = "unknown"
        self._username = ""
        self.identity: Identity | None = None
        self._unknown_keys = 0
        self._ready: asyncio.Future[asyncssh.SSHClientConnection] | None = None
        self._onward: asyncssh.SSHClientConnection | None = None
        self.plan: onward.Plan | None = None
        self.session_id: str | None = None
        self.expires_at: datetime | None = None
        self.warned_for: datetime | None = None
        self.recordings: SessionRecordings = gateway.no_recordings
        self.exec_record_bytes = gateway.settings.gateway_exec_record_bytes
        self._channels: list[SessionRelay] = []
        self._sessions: set[SessionRelay] = set()  # every session channel not yet closed
        self._pending_forwards = 0
        self._forwards_refused = 0
        self._forwards: list[ForwardRelay] = []
        self._channel_count = 0
        self._sent = 0
        self._received = 0
        self._exit_status: int | None = None
        self._end_reason: str | None = None
        self._refused = False
        self._finished = False

    # -- asyncssh's callbacks ---------------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername") or ("unknown", 0)
        self.source = f"{peer[0]}:{peer[1]}"
        self._host = str(peer[0])
        if not self._gateway.admit(self):
            conn.close()

    def begin_auth(self, username: str) -> bool:
        self._username = username
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self._unknown_keys >= MAX_UNKNOWN_KEYS:
            self._drop()
            return False
        ctx = self._gateway.ctx
        try:
            found = await self._gateway.run(identity_for_key, ctx, key.public_data, ctx.clock.now())
        except StorageUnavailable:
            log.warning("cannot look up a key offered from %s: the database is unavailable", self.source)
            return False
        if found is None:
            self._unknown_keys += 1
            return False
        self.identity = found[0]
        return True

    def auth_completed(self) -> None:
        if not self._gateway.signed_in(self):
            self._ready = asyncio.get_running_loop().create_future()
            self._ready.set_exception(Refused("the gateway is full; try again later"))
            self._ready.add_done_callback(self._prepared)
            return
        self._ready = asyncio.get_running_loop().create_task(self._prepare())
        self._ready.add_done_callback(self._prepared)

    def session_requested(self) -> SessionRelay:
        self._check_room()
        relay = SessionRelay(self)
        self._sessions.add(relay)
        return relay

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> tuple[asyncssh.SSHTCPChannel[bytes], Any]:
        if self._conn is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "not connected")
        self._check_room()
        self._pending_forwards += 1
        return self._conn.create_tcp_channel(), self._counted_forward(
            dest_host, dest_port, orig_host, orig_port
        )

    def _check_room(self) -> None:
        if len(self._sessions) + self._pending_forwards + len(self._forwards) >= MAX_CHANNELS:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_RESOURCE_SHORTAGE, f"at most {MAX_CHANNELS} channels at once on one connection"
            )

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # remote forwarding (ssh -R) is never relayed

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        self._end_reason = self._end_reason or "the user disconnected"
        self._close_onward()
        for relay in list(self._channels):
            relay.connection_lost(None)
        for forward in list(self._forwards):
            forward.end()
        if self.identity is None and self._unknown_keys:
            self._gateway.spawn(self._refuse_unknown_key())
        self._finish()

    # -- preparing the way to the target ----------------------------------------------------------

    async def _prepare(self) -> asyncssh.SSHClientConnection:
        identity, gateway = self.identity, self._gateway
        if identity is None:
            raise Refused("not signed in")
        ctx = gateway.ctx
        try:
            self.plan = await gateway.run(onward.decide, ctx, identity, self._username)
            credential = await gateway.run(onward.mint, ctx, self.plan)
            self.session_id = await gateway.run(
                sessions.open_session,
                ctx,
                identity,
                grant=credential.grant,
                target=self.plan.target.name,
                login=self.plan.login,
                credential_serial=credential.serial,
                source=self.source,
                gateway=gateway.id,
            )
        except JitgateError as exc:
            raise Refused(exc.message) from None
        self.expires_at = credential.grant.expires_at
        gateway.watch(self)
        try:
            self.recordings = SessionRecordings(gateway.recordings_root, self.session_id)
        except RecordingFailed as exc:
            self._end_reason = str(exc)
            raise Refused(str(exc)) from None
        try:
            self._onward = await onward.connect(self.plan, credential, gateway.host_ca_keys())
        except JitgateError as exc:
            self._end_reason = exc.message
            raise Refused(exc.message) from None
        if self._end_reason is not None:  # ended (a revoke, say) while the target was being reached
            self._close_onward()
            raise Refused(self._end_reason)
        return self._onward

    def _prepared(self, task: asyncio.Future[asyncssh.SSHClientConnection]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self._refused = True
        if not isinstance(exc, Refused):
            log.error("preparing a gateway connection failed: %s", type(exc).__name__)
        # A connection that goes nowhere does not linger: its channels say why, then it closes.
        asyncio.get_running_loop().call_later(REFUSED_LINGER, self._drop)

    async def onward(self) -> asyncssh.SSHClientConnection:
        if self._ready is None:
            raise Refused("not signed in")
        try:
            return await asyncio.shield(self._ready)
        except Refused:
            raise
        except asyncio.CancelledError:
            if not self._ready.cancelled():
                raise  # it is the channel that is being cancelled, not the way to the target
            raise Refused(self._end_reason or "the connection is ending") from None
        except Exception:
            raise Refused("the gateway failed to reach the target; it logged why") from None

    async def _counted_forward(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> ForwardRelay:
        try:
            return await self._forward(dest_host, dest_port, orig_host, orig_port)
        finally:
            self._pending_forwards -= 1  # now in ``_forwards``, or refused

    async def _forward(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> ForwardRelay:
        try:
            connection = await self.onward()
        except Refused as refused:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(refused)) from None
        plan = self.plan
        if plan is None or plan.role.ssh is None or not plan.role.ssh.port_forwarding:
            role = plan.role.name if plan is not None else "?"
            message = f"port forwarding is not allowed by role {role}"
            self._forwards_refused += 1
            if self._forwards_refused == 1:  # one record per connection stands for the rest
                self._gateway.spawn(self._audit_refusal(PolicyDenied(message), f"{dest_host}:{dest_port}"))
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, message)
        try:
            recorder = self.recordings.forward(
                self.next_channel(),
                dest_host=dest_host,
                dest_port=dest_port,
                orig_host=orig_host,
                orig_port=orig_port,
                timestamp=self._gateway.wall(),
            )
        except RecordingFailed as exc:
            self.recording_failed(exc)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
        target_side = ForwardTarget()
        try:
            chan, _ = await connection.create_connection(lambda: target_side, dest_host, dest_port)
        except asyncssh.ChannelOpenError as exc:
            recorder.close()
            raise asyncssh.ChannelOpenError(exc.code, f"the target cannot open it: {exc.reason}") from None
        relay = ForwardRelay(self, recorder, chan, target_side)
        self._forwards.append(relay)
        return relay

    # -- relay.Link -------------------------------------------------------------------------------

    def next_channel(self) -> int:
        self._channel_count += 1
        return self._channel_count

    def count(self, *, sent: int = 0, received: int = 0) -> None:
        self._sent += sent
        self._received += received

    def channel_opened(self, relay: SessionRelay) -> None:
        self._channels.append(relay)

    def channel_closed(self, relay: SessionRelay, exit_status: int | None) -> None:
        self._sessions.discard(relay)
        if relay in self._channels:
            self._channels.remove(relay)
            self._exit_status = exit_status if exit_status is not None else self._exit_status
        if self._refused and not self._channels:
            self._drop()

    def forward_closed(self, relay: ForwardRelay) -> None:
        if relay in self._forwards:
            self._forwards.remove(relay)

    def recording_failed(self, exc: RecordingFailed) -> None:
        self.end(f"{exc}; the session ends")

    # -- ending -----------------------------------------------------------------------------------

    @property
    def interactive(self) -> bool:
        return any(relay.interactive for relay in self._channels)

    def announce(self, message: str) -> None:
        for relay in self._channels:
            if relay.interactive:
                relay.announce(message)

    def end(self, reason: str) -> None:
        """End the connection now: the target side first, then each channel with the reason."""
        if self._end_reason is not None and self._finished:
            return
        self._end_reason = reason
        if self._ready is not None and not self._ready.done():
            # Still on its way to the target (a revoke landed meanwhile): stop there. Nothing was
            # relayed yet; like a connection that goes nowhere, its channels are refused with the
            # reason (also those the client opens only now), then it closes.
            self._ready.cancel()
            self._refused = True
            asyncio.get_running_loop().call_later(REFUSED_LINGER, self._drop)
            return
        if self._refused:
            return  # nothing is relayed; it closes once its channels have said why
        self._close_onward()
        for relay in list(self._channels):
            relay.end(reason)
        for forward in list(self._forwards):
            forward.end()
        asyncio.get_running_loop().call_later(CLOSE_AFTER, self._drop)

    def _close_onward(self) -> None:
        if self._onward is not None:
            self._onward.close()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _finish(self) -> None:
        """Record the session's end once, with its recordings' digests."""
        if self._finished:
            return
        self._finished = True
        self._gateway.unwatch(self)
        if self.session_id is None:
            return
        facts = [f.as_json() for f in self.recordings.close_all()]
        self._gateway.spawn(
            self._gateway.run(
                sessions.close_session,
                self._gateway.ctx,
                self.session_id,
                reason=self._end_reason or "ended",
                bytes_in=self._sent,
                bytes_out=self._received,
                recordings=facts,
                exit_status=self._exit_status,
            )
        )

    async def _refuse_unknown_key(self) -> None:
        """Audit a sign-in with no registered key, unless its source address is throttled.

        Anyone who can reach the port can cause this record, so each address gets the HTTP
        side's budget of failures; past it, one ``auth.throttled`` record stands for the rest.
        Keys are still looked up for a throttled address (users behind one NAT are not locked
        out by a stranger among them); only the audit records are bounded.
        """
        throttle = self._gateway.key_failures
        try:
            throttle.check(self._host)
        except TooManyFailures:
            return
        started = throttle.failed(self._host)
        await self._audit_refusal(PolicyDenied("no registered key was offered"), self._username[:64])
        if started is not None:
            await self._gateway.run(audit_throttled, self._gateway.ctx, throttle, started, "gateway")

    async def _audit_refusal(self, exc: JitgateError, target: str) -> None:
        identity = self.identity or ANONYMOUS

        def record() -> None:
            ctx = self._gateway.ctx
            ctx.record_refusal(
                identity, onward.ACTION, exc, {"target": target, "details": {"source": self.source}}
            )

        await self._gateway.run(record)
