"""Query functions for the gateway's session records (``gateway_sessions``). They never commit.

A session row is written once when the gateway connects a user to a target and ended once, by a
conditional update on ``state = 'live'``: whoever ends it first (its gateway, a reaper in another
process) wins, and everyone else changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from jitgate.store.tables import gateway_sessions, grants

LIVE = "live"
ENDED = "ended"
REASON_LIMIT = 200
"""``gateway_sessions.end_reason`` holds this many characters; longer reasons are cut."""

t = gateway_sessions


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One connection through the gateway, as recorded.

    While the session is live, ``end_reason`` holds the reason of a kill request, if one was made
    (the gateway ends the session with it).
    """

    id: str
    holder: str
    target: str
    login: str
    grant_id: str
    credential_serial: str
    source: str
    gateway: str
    state: str
    started_at: datetime
    seen_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    kill_requested_at: datetime | None
    kill_requested_by: str | None
    bytes_in: int
    bytes_out: int
    recordings: tuple[dict[str, Any], ...]

    @property
    def live(self) -> bool:
        return self.state == LIVE


def session_of_row(row: RowMapping) -> SessionRow:
    return SessionRow(
        id=row["id"],
        holder=row["holder"],
        target=row["target"],
        login=row["login"],
        grant_id=row["grant_id"],
        credential_serial=row["credential_serial"],
        source=row["source"],
        gateway=row["gateway"],
        state=row["state"],
        started_at=row["started_at"],
        seen_at=row["seen_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        kill_requested_at=row["kill_requested_at"],
        kill_requested_by=row["kill_requested_by"],
        bytes_in=int(row["bytes_in"]),
        bytes_out=int(row["bytes_out"]),
        recordings=tuple(dict(r) for r in row["recordings"] or ()),
    )


def cut_reason(reason: str) -> str:
    return reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 1] + "…"


def insert_session(
    conn: Connection,
    *,
    session_id: str,
    now: datetime,
    holder: str,
    target: str,
    login: str,
    grant_id: str,
    credential_serial: str,
    source: str,
    gateway: str,
) -> None:
    """A new live session, started and last seen ``now``, with nothing relayed or recorded yet."""
    conn.execute(
        t.insert().values(
            id=session_id,
            holder=holder,
            target=target,
            login=login,
            grant_id=grant_id,
            credential_serial=credential_serial,
            source=source,
            gateway=gateway,
            state=LIVE,
            started_at=now,
            seen_at=now,
            bytes_in=0,
            bytes_out=0,
            recordings=[],
        )
    )


_GET = sa.select(t).where(t.c.id == sa.bindparam("session_id"))
_GET_LOCKED = _GET.with_for_update()


def get_session(conn: Connection, session_id: str, *, lock: bool = False) -> SessionRow | None:
    found = conn.execute(_GET_LOCKED if lock else _GET, {"session_id": session_id}).mappings().first()
    return session_of_row(found) if found is not None else None


def end_session(
    conn: Connection,
    session_id: str,
    *,
    now: datetime,
    reason: str,
    bytes_in: int,
    bytes_out: int,
    recordings: Sequence[Mapping[str, Any]],
    seen_before: datetime | None = None,
) -> bool:
    """End a live session; False if it had ended already (or, given ``seen_before``, had beaten since)."""
    query = t.update().where(t.c.id == session_id, t.c.state == LIVE)
    if seen_before is not None:
        query = query.where(t.c.seen_at < seen_before)
    done = conn.execute(
        query.values(
            state=ENDED,
            ended_at=now,
            end_reason=cut_reason(reason),
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            recordings=[dict(r) for r in recordings],
        )
    )
    return done.rowcount == 1


def request_kill(conn: Connection, session_id: str, *, now: datetime, by: str, reason: str) -> bool:
    """Ask the owning gateway to end a live session; ``reason`` waits in ``end_reason`` until it does."""
    done = conn.execute(
        t.update()
        .where(t.c.id == session_id, t.c.state == LIVE, t.c.kill_requested_at.is_(None))
        .values(kill_requested_at=now, kill_requested_by=by, end_reason=cut_reason(reason))
    )
    return done.rowcount == 1


def heartbeat(conn: Connection, gateway: str, session_ids: Sequence[str], now: datetime) -> int:
    if not session_ids:
        return 0
    done = conn.execute(
        t.update()
        .where(t.c.id.in_(list(session_ids)), t.c.gateway == gateway, t.c.state == LIVE)
        .values(seen_at=now)
    )
    return int(done.rowcount)


def stale_sessions(
    conn: Connection, *, seen_before: datetime, limit: int, skip_locked: bool
) -> list[SessionRow]:
    """Live sessions whose gateway has not beaten since ``seen_before``."""
    query = (
        sa.select(t).where(t.c.state == LIVE, t.c.seen_at < seen_before).order_by(t.c.seen_at).limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return [session_of_row(r) for r in conn.execute(query).mappings()]


# Every gateway process runs this four times a second for all of its sessions: built once, one
# round trip, by primary keys on both sides.
_WATCH = (
    sa.select(
        t.c.id,
        t.c.state,
        t.c.end_reason,
        t.c.kill_requested_at,
        t.c.grant_id,
        grants.c.state.label("grant_state"),
        grants.c.expires_at,
    )
    .select_from(t.outerjoin(grants, grants.c.id == t.c.grant_id))
    .where(t.c.id.in_(sa.bindparam("ids", expanding=True)))
)


def watch_rows(conn: Connection, session_ids: Sequence[str]) -> dict[str, RowMapping]:
    """For each session found: its state, kill request, and its grant's state and end."""
    if not session_ids:
        return {}
    rows = conn.execute(_WATCH, {"ids": list(dict.fromkeys(session_ids))}).mappings()
    return {row["id"]: row for row in rows}
