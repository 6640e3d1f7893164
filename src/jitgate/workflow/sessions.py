"""Sessions through the SSH gateway: opened under an active grant, watched while they run, ended
once — by the gateway, by a kill request, or by whoever notices that their gateway stopped.

Opening a session grants access, so it is refused while the audit log is broken. Everything that
ends one commits even then, with its record parked (``ctx.transaction(parks_audit=True)``).

A gateway process asks ``watch`` about all of its sessions several times a second, in one read;
``close_reason`` tells it which to end and why. A kill request is a row change any broker can
make: the owning gateway sees it at its next ``watch``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.engine import Connection, RowMapping

from jitgate.domain.identity import SYSTEM, Identity
from jitgate.domain.model import Grant, RequestState
from jitgate.domain.text import checked_text
from jitgate.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from jitgate.store import paging
from jitgate.store import queries as q
from jitgate.store import sessions as store
from jitgate.store.paging import Page
from jitgate.store.sessions import SessionRow
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.views import _iso

AUDITORS = "auditors"
"""The group whose members read every session, as they read the whole audit log."""
REAP_BATCH = 200
SHELL = "shell"


@dataclass(frozen=True, slots=True)
class SessionWatch:
    expires_at: datetime
    """The grant's current end (an extension moves it)."""
    close_reason: str | None
    """Why the session must end now; None while it may go on."""


def _grant_fields(conn: Connection, grant_id: str) -> dict[str, Any]:
    """The audit columns a session's records share with its grant's (request, role)."""
    grant = q.get_grant(conn, grant_id)
    return {"request_id": grant.request_id, "role": grant.role} if grant is not None else {}


def open_session(
    ctx: WorkflowContext,
    identity: Identity,
    *,
    grant: Grant,
    target: str,
    login: str,
    credential_serial: str,
    source: str,
    gateway: str,
) -> str:
    """Record a new live session of ``identity`` on ``target`` under ``grant``; returns its id.

    The grant is read again under a lock: a grant revoked or expired since the caller read it
    (``Conflict``) opens nothing.
    """
    session_id = "s-" + secrets.token_hex(8)
    with ctx.refusals_audited(identity, "session.start", grant_id=grant.id, target=target):
        now = ctx.clock.now()
        with ctx.transaction() as conn:
            current = q.get_grant(conn, grant.id, lock=True)
            if current is None or current.holder != identity.name:
                raise NotFound(f"no grant {grant.id}")
            if not current.is_active_at(now):
                raise Conflict(f"grant {grant.id} is not active; no session opened")
            if target not in current.targets:
                raise PolicyDenied(f"grant {grant.id} does not cover target {target}")
            store.insert_session(
                conn,
                session_id=session_id,
                now=now,
                holder=identity.name,
                target=target,
                login=login,
                grant_id=current.id,
                credential_serial=credential_serial,
                source=source,
                gateway=gateway,
            )
            ctx.audit_event(
                conn,
                identity.name,
                "session.started",
                request_id=current.request_id,
                grant_id=current.id,
                role=current.role,
                target=target,
                details={
                    "session": session_id,
                    "login": login,
                    "credential_serial": credential_serial,
                    "source": source,
                    "gateway": gateway,
                },
            )
    return session_id


def _ended_event(
    ctx: WorkflowContext,
    conn: Connection,
    row: SessionRow,
    *,
    actor: str,
    details: dict[str, Any],
    grant: Mapping[str, Any],
) -> None:
    """Record ``session.ended``; a reason that looks like a secret is withheld, never the record."""
    fields = {"grant_id": row.grant_id, "target": row.target, **grant}
    try:
        event = ctx.checked_event(actor, "session.ended", **fields, details=details)
    except InvalidInput:
        details = {**details, "reason": "(withheld: it looked like a secret)"}
        event = ctx.checked_event(actor, "session.ended", **fields, details=details)
    ctx.record_events(conn, [event])


def close_session(
    ctx: WorkflowContext,
    session_id: str,
    *,
    reason: str,
    bytes_in: int,
    bytes_out: int,
    recordings: Sequence[Mapping[str, Any]],
    exit_status: int | None = None,
) -> None:
    """End a session with what its gateway knows of it. A session already ended stays as it was."""
    now = ctx.clock.now()
    with ctx.transaction(parks_audit=True) as conn:
        row = store.get_session(conn, session_id, lock=True)
        if row is None:
            raise NotFound(f"no session {session_id}")
        reason = store.cut_reason(reason)
        if not store.end_session(
            conn,
            session_id,
            now=now,
            reason=reason,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            recordings=recordings,
        ):
            return
        details = {
            "session": session_id,
            "reason": reason,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "exit_status": exit_status,
            "recordings": [dict(r) for r in recordings],
        }
        _ended_event(
            ctx, conn, row, actor=row.holder, details=details, grant=_grant_fields(conn, row.grant_id)
        )


def _close_reason(row: RowMapping | None, now: datetime) -> str | None:
    if row is None:
        return "session not found"
    if row["state"] != store.LIVE:
        return f"session ended ({row['end_reason'] or 'no reason recorded'})"
    if row["kill_requested_at"] is not None:
        return str(row["end_reason"] or "ended on request")
    return _grant_reason(row["grant_id"], row["grant_state"], row["expires_at"], now)


def _grant_reason(grant_id: str, state: str | None, expires_at: datetime | None, now: datetime) -> str | None:
    """Why a session under this grant must end: its state as stored, or its end passed by the clock."""
    if state is None or expires_at is None:
        return f"grant {grant_id} not found"
    if state == RequestState.REVOKED.value:
        return f"grant {grant_id} was revoked"
    if state == RequestState.EXPIRED.value or (state == RequestState.ACTIVE.value and expires_at <= now):
        return f"grant {grant_id} expired"
    if state != RequestState.ACTIVE.value:
        return f"grant {grant_id} is {state.lower()}"
    return None


def watch(ctx: WorkflowContext, session_ids: Sequence[str]) -> dict[str, SessionWatch]:
    """For each session: its grant's current end, and why it must end now (None: it may go on).

    One indexed read for all of them, whatever their number.
    """
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        rows = store.watch_rows(conn, session_ids)
    found: dict[str, SessionWatch] = {}
    for session_id in session_ids:
        row = rows.get(session_id)
        expires_at = row["expires_at"] if row is not None and row["expires_at"] is not None else now
        found[session_id] = SessionWatch(expires_at=expires_at, close_reason=_close_reason(row, now))
    return found


def heartbeat(ctx: WorkflowContext, gateway: str, session_ids: Sequence[str]) -> None:
    """``gateway`` still holds these sessions: one update, no audit record."""
    if not session_ids:
        return
    with ctx.db.write() as conn:
        store.heartbeat(conn, gateway, session_ids, ctx.clock.now())


def reap_lost(ctx: WorkflowContext, *, stale_after: timedelta) -> int:
    """End live sessions whose gateway stopped beating ``stale_after`` ago; returns how many.

    Their connections died with their gateway, and so did what it knew of their recordings.
    Each row is ended by one conditional update, so reapers in several processes end it once.
    """
    now = ctx.clock.now()
    cutoff = now - stale_after
    ended = 0
    with ctx.transaction(parks_audit=True) as conn:
        stale = store.stale_sessions(
            conn, seen_before=cutoff, limit=REAP_BATCH, skip_locked=ctx.db.locks_rows
        )
        grants = q.grants_by_id(conn, list({s.grant_id for s in stale}))
        for row in stale:
            reason = "gateway stopped"
            if not store.end_session(
                conn,
                row.id,
                now=now,
                reason=reason,
                bytes_in=row.bytes_in,
                bytes_out=row.bytes_out,
                recordings=[],
                seen_before=cutoff,
            ):
                continue
            grant = grants.get(row.grant_id)
            details = {
                "session": row.id,
                "reason": reason,
                "bytes_in": row.bytes_in,
                "bytes_out": row.bytes_out,
                "exit_status": None,
                "recordings": [],
                "gateway": row.gateway,
            }
            fields = {"request_id": grant.request_id, "role": grant.role} if grant is not None else {}
            _ended_event(ctx, conn, row, actor=SYSTEM.name, details=details, grant=fields)
            ended += 1
    return ended


def may_read_all(identity: Identity) -> bool:
    return identity.admin or AUDITORS in identity.groups


def _visible(identity: Identity, row: SessionRow | None, session_id: str) -> SessionRow:
    if row is None or not (row.holder == identity.name or may_read_all(identity)):
        raise NotFound(f"no session {session_id}")
    return row


def request_kill(ctx: WorkflowContext, identity: Identity, session_id: str, *, reason: str) -> SessionRow:
    """Ask the gateway holding a live session to end it: admins, or the session's own holder.

    The gateway sees the request at its next ``watch`` and ends the session with the reason.
    """
    with ctx.refusals_audited(identity, "session.kill_requested", details={"session": session_id}):
        checked_text("reason", reason)
        if not reason.strip():
            raise InvalidInput("give a reason for ending the session")
        now = ctx.clock.now()
        with ctx.transaction(parks_audit=True) as conn:
            row = _visible(identity, store.get_session(conn, session_id, lock=True), session_id)
            if not (identity.admin or row.holder == identity.name):
                raise PolicyDenied(f"only admins and {row.holder} may end session {session_id}")
            if not row.live:
                raise Conflict(f"session {session_id} has already ended")
            event = ctx.checked_event(
                identity.name,
                "session.kill_requested",
                grant_id=row.grant_id,
                target=row.target,
                **_grant_fields(conn, row.grant_id),
                details={"session": session_id, "reason": reason},
            )
            text = f"ended by {identity.name} ({reason.strip()})"
            if not store.request_kill(conn, session_id, now=now, by=identity.name, reason=text):
                raise Conflict(f"session {session_id} is already being ended")
            ctx.record_events(conn, [event])
            found = store.get_session(conn, session_id)
        if found is None:
            raise NotFound(f"no session {session_id}")
        return found


def session_page(
    ctx: WorkflowContext,
    identity: Identity,
    *,
    active: bool = False,
    user: str | None = None,
    limit: int = 100,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> Page[SessionRow]:
    """One page of the caller's own sessions, newest first; admins and auditors may name another
    ``user``, or ``*`` for everyone's. The cursors are those of the pages beside it."""
    wanted = identity.name if user is None else user
    if wanted != identity.name and not may_read_all(identity):
        raise PolicyDenied("only admins and auditors may list other users' sessions")
    with ctx.db.read() as conn:
        return paging.page_sessions(
            conn,
            holder=None if wanted == "*" else wanted,
            active=active,
            limit=limit,
            older_than=older_than,
            newer_than=newer_than,
        )


def get_session(ctx: WorkflowContext, identity: Identity, session_id: str) -> SessionRow:
    """A session, to its holder, admins and auditors; to anyone else, ``NotFound``."""
    with ctx.db.read() as conn:
        return _visible(identity, store.get_session(conn, session_id), session_id)


def session_json(row: SessionRow, now: datetime) -> dict[str, Any]:
    end = row.ended_at or now
    return {
        "id": row.id,
        "user": row.holder,
        "target": row.target,
        "login": row.login,
        "grant": row.grant_id,
        "credential_serial": row.credential_serial,
        "source": row.source,
        "gateway": row.gateway,
        "state": row.state,
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "end_reason": row.end_reason if not row.live else None,
        "duration_s": round(max((end - row.started_at).total_seconds(), 0.0), 3),
        "bytes_in": row.bytes_in,
        "bytes_out": row.bytes_out,
        "recordings": [dict(r) for r in row.recordings],
        "kill_requested_at": _iso(row.kill_requested_at),
        "kill_requested_by": row.kill_requested_by,
    }


def recording_of(row: SessionRow, channel: int | None) -> Mapping[str, Any]:
    """The recording facts of ``channel``; by default the first shell recording, else the first."""
    if channel is not None:
        found = next((r for r in row.recordings if r.get("channel") == channel), None)
    else:
        found = next((r for r in row.recordings if r.get("kind") == SHELL), None)
        found = found or (row.recordings[0] if row.recordings else None)
    if found is None:
        which = f" of channel {channel}" if channel is not None else ""
        raise NotFound(f"session {row.id} has no recording{which}")
    return found


def recording_path(root: Path, row: SessionRow, channel: int | None) -> Path:
    """The file of a recording, under the recordings directory ``root``.

    The row names it relative to ``root``; a name that is absolute or leads outside is refused.
    """
    name = recording_of(row, channel).get("file")
    if not isinstance(name, str) or not name:
        raise NotFound(f"session {row.id} names no recording file")
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or "\\" in name:
        raise InvalidInput(f"session {row.id} names a recording outside the recordings directory")
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise InvalidInput(f"session {row.id} names a recording outside the recordings directory")
    return path
