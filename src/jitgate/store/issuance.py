"""What a grant handed out and the work of taking it back: credential rows and the revocation
queue. Each function takes a Connection and never commits (see ``queries.py`` for the rest)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from jitgate.store.tables import credentials, revocations

_INSERT_CREDENTIAL = credentials.insert()
LOCK_RETRY = timedelta(milliseconds=500)
_CLAIM_LOCK = 0x6A697467  # any constant; it only has to be the same in every replica
REVOKE, ELEVATE, WITHDRAW = "revoke", "elevate", "withdraw"
"""Queue actions: revoke a credential jitgate made; elevate or withdraw an existing account."""
TAKING_BACK = (REVOKE, WITHDRAW)


def get_credential(conn: Connection, credential_id: int) -> RowMapping | None:
    return conn.execute(sa.select(credentials).where(credentials.c.id == credential_id)).mappings().first()


def set_credential_record(
    conn: Connection, credential_id: int, *, state: str, record: dict[str, Any]
) -> None:
    """Replace the record, and the state unless the credential was revoked meanwhile."""
    conn.execute(
        credentials.update()
        .where(credentials.c.id == credential_id)
        .values(
            state=sa.case((credentials.c.revoked_at.is_(None), state), else_=credentials.c.state),
            record=record,
        )
    )


def next_revocation_attempt(conn: Connection) -> datetime | None:
    query = sa.select(sa.func.min(revocations.c.next_attempt_at)).where(revocations.c.state == "pending")
    value: datetime | None = conn.execute(query).scalar()
    return value


def insert_credential(
    conn: Connection,
    *,
    grant_id: str,
    holder: str,
    target: str,
    kind: str,
    handle: str,
    state: str,
    now: datetime,
    record: dict[str, Any],
    valid_after: datetime | None = None,
    valid_before: datetime | None = None,
) -> int:
    result = conn.execute(
        _INSERT_CREDENTIAL,
        {
            "grant_id": grant_id,
            "holder": holder,
            "target": target,
            "kind": kind,
            "handle": handle,
            "state": state,
            "created_at": now,
            "record": record,
            "valid_after": valid_after,
            "valid_before": valid_before,
        },
    )
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("credential insert returned no key")
    return int(key[0])


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A credential minted and complete in one step (an SSH certificate), as its row records it."""

    grant_id: str
    holder: str
    target: str
    kind: str
    handle: str
    record: dict[str, Any]
    valid_after: datetime
    valid_before: datetime


def insert_issued_credentials(conn: Connection, rows: Sequence[IssuedCredential], now: datetime) -> None:
    """Record many minted credentials with one statement."""
    if rows:
        conn.execute(
            _INSERT_CREDENTIAL,
            [
                {
                    "grant_id": r.grant_id,
                    "holder": r.holder,
                    "target": r.target,
                    "kind": r.kind,
                    "handle": r.handle,
                    "state": "issued",
                    "created_at": now,
                    "record": r.record,
                    "valid_after": r.valid_after,
                    "valid_before": r.valid_before,
                }
                for r in rows
            ],
        )


def mark_credential_issued(
    conn: Connection,
    credential_id: int,
    *,
    record: dict[str, Any],
    valid_after: datetime,
    valid_before: datetime,
) -> None:
    conn.execute(
        credentials.update()
        .where(credentials.c.id == credential_id)
        .values(state="issued", record=record, valid_after=valid_after, valid_before=valid_before)
    )


def credentials_of_grant(conn: Connection, grant_id: str) -> list[RowMapping]:
    """Credentials of a grant still to be taken back: not revoked, and no revocation queued yet
    (a failed issue queues its own clean-up before the grant ends)."""
    queued = sa.select(revocations.c.id).where(
        revocations.c.credential_id == credentials.c.id, revocations.c.action != ELEVATE
    )
    query = sa.select(credentials).where(
        credentials.c.grant_id == grant_id, credentials.c.revoked_at.is_(None), ~queued.exists()
    )
    return list(conn.execute(query).mappings())


def issued_for_grant(conn: Connection, grant_id: str) -> list[RowMapping]:
    """Every credential handed out under a grant, revoked ones included, oldest first."""
    query = sa.select(credentials).where(credentials.c.grant_id == grant_id).order_by(credentials.c.id)
    return list(conn.execute(query).mappings())


def mark_credential_revoked(conn: Connection, credential_id: int, now: datetime) -> None:
    conn.execute(
        credentials.update()
        .where(credentials.c.id == credential_id, credentials.c.revoked_at.is_(None))
        .values(revoked_at=now, state="revoked")
    )


def revoked_unexpired(conn: Connection, *, kind: str, now: datetime) -> list[RowMapping]:
    """Credentials revoked before their own end: what a revocation list must still name."""
    query = sa.select(credentials).where(
        credentials.c.kind == kind, credentials.c.revoked_at.is_not(None), credentials.c.valid_before > now
    )
    return list(conn.execute(query).mappings())


def enqueue_revocation(
    conn: Connection,
    *,
    credential_id: int,
    grant_id: str,
    target: str,
    kind: str,
    handle: str,
    now: datetime,
    not_before: datetime | None = None,
    action: str = REVOKE,
    lock_key: str | None = None,
) -> None:
    """Make sure ``action`` (a revocation unless told otherwise) of the credential will run from
    ``now`` on (a new one from ``not_before`` when given).

    A credential has at most one row in the queue. If one exists already (the grant ended while the
    credential was still being created, and its revocation may even have run before the login
    existed; or an elevation still to be applied), it becomes ``action`` and is due again:
    revoking twice is harmless, a login left behind is not. A claim on it stays: the attempt in
    flight finds the row changed when it finishes, and the new action runs after it.
    """
    again = conn.execute(
        revocations.update()
        .where(revocations.c.credential_id == credential_id)
        .values(state="pending", next_attempt_at=now, done_at=None, action=action)
    )
    if again.rowcount:
        return
    conn.execute(
        revocations.insert().values(
            credential_id=credential_id,
            grant_id=grant_id,
            target=target,
            kind=kind,
            handle=handle,
            state="pending",
            attempts=0,
            next_attempt_at=not_before or now,
            created_at=now,
            action=action,
            lock_key=lock_key,
        )
    )


def due_revocations(conn: Connection, *, now: datetime, limit: int, skip_locked: bool) -> list[RowMapping]:
    """Due work, at most one item per ``lock_key`` and none whose key another item holds a claim on.

    Items held back are made due again a moment later (``LOCK_RETRY``). On PostgreSQL the claiming
    transactions of all replicas take turns (a transaction-scoped advisory lock), so two replicas
    cannot each claim an item of the same key: each sees the other's committed claim.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK})
    query = (
        sa.select(revocations)
        .where(revocations.c.state == "pending", revocations.c.next_attempt_at <= now)
        .order_by(revocations.c.next_attempt_at)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    found = list(conn.execute(query).mappings())
    keys = {row["lock_key"] for row in found if row["lock_key"] is not None}
    if not keys:
        return found
    busy = set(
        conn.execute(
            sa.select(revocations.c.lock_key).where(
                revocations.c.lock_key.in_(sorted(keys)), revocations.c.claimed_until > now
            )
        ).scalars()
    )
    chosen: list[RowMapping] = []
    held_back: list[int] = []
    for row in found:
        key = row["lock_key"]
        if key is not None and key in busy:
            held_back.append(row["id"])
            continue
        if key is not None:
            busy.add(key)
        chosen.append(row)
    if held_back:
        conn.execute(
            revocations.update()
            .where(revocations.c.id.in_(held_back))
            .values(next_attempt_at=now + LOCK_RETRY)
        )
    return chosen


def get_revocation(conn: Connection, revocation_id: int, *, lock: bool) -> RowMapping | None:
    query = sa.select(revocations).where(revocations.c.id == revocation_id)
    if lock:
        query = query.with_for_update()
    return conn.execute(query).mappings().first()


def finish_revocation(
    conn: Connection, revocation_id: int, now: datetime, *, claimed_until: datetime
) -> bool:
    """Mark done, unless the revocation was queued again since it was claimed (then it runs again)."""
    result = conn.execute(
        revocations.update()
        .where(
            revocations.c.id == revocation_id,
            revocations.c.state == "pending",
            revocations.c.next_attempt_at == claimed_until,
        )
        .values(
            state="done",
            done_at=now,
            attempts=revocations.c.attempts + 1,
            last_error=None,
            claimed_until=None,
        )
    )
    if result.rowcount != 1:
        release_claim(conn, revocation_id, claimed_until=claimed_until)
    return result.rowcount == 1


def claim_revocation(conn: Connection, revocation_id: int, *, until: datetime) -> None:
    """Hold a due revocation for one worker until ``until``; if it dies, the work falls due again."""
    conn.execute(
        revocations.update()
        .where(revocations.c.id == revocation_id)
        .values(next_attempt_at=until, claimed_until=until)
    )


def release_claim(conn: Connection, revocation_id: int, *, claimed_until: datetime) -> None:
    """End this attempt's claim (if it is still this attempt's), so work on the same key may run."""
    conn.execute(
        revocations.update()
        .where(revocations.c.id == revocation_id, revocations.c.claimed_until == claimed_until)
        .values(claimed_until=None)
    )


def retry_revocation(
    conn: Connection, revocation_id: int, *, error: str, next_attempt_at: datetime, claimed_until: datetime
) -> None:
    """Record a failed attempt and when to try again; only while the attempt still holds its claim
    (a claim that lapsed belongs to whoever took the work since). Work queued again while the
    attempt ran (its grant ended) stays due when it was queued: it is not this failure's to delay."""
    conn.execute(
        revocations.update()
        .where(revocations.c.id == revocation_id, revocations.c.claimed_until == claimed_until)
        .values(
            attempts=revocations.c.attempts + 1,
            last_error=error,
            next_attempt_at=sa.case(
                (revocations.c.next_attempt_at == claimed_until, next_attempt_at),
                else_=revocations.c.next_attempt_at,
            ),
            claimed_until=None,
        )
    )


def elevate_again(conn: Connection, credential_id: int, now: datetime) -> None:
    """Apply an elevation once more (what it gave was taken away under it), unless its grant
    has ended and its withdrawal is queued instead."""
    conn.execute(
        revocations.update()
        .where(revocations.c.credential_id == credential_id, revocations.c.action == ELEVATE)
        .values(state="pending", next_attempt_at=now, done_at=None)
    )


def pending_revocations(conn: Connection, grant_ids: Sequence[str] | None = None) -> list[RowMapping]:
    """Credentials still to be taken back (elevations still to be applied are not among them)."""
    query = (
        sa.select(revocations)
        .where(revocations.c.state == "pending", revocations.c.action.in_(TAKING_BACK))
        .order_by(revocations.c.id)
    )
    if grant_ids is not None:
        query = query.where(revocations.c.grant_id.in_(list(grant_ids)))
    return list(conn.execute(query).mappings())
