"""Query functions over the broker's tables. Each takes a Connection and never commits.

Rows come back as domain objects. ``lock=True`` takes the row lock (``FOR UPDATE``) on PostgreSQL;
on SQLite the write transaction already holds the database's write lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from jitgate.domain.identity import Identity, IdentityKind
from jitgate.domain.model import (
    AccessRequest,
    Grant,
    GrantEnd,
    RequestKind,
    RequestState,
    Review,
    Verdict,
)
from jitgate.errors import NotFound
from jitgate.store.tables import (
    grants,
    requests,
    reviews,
    users,
)

# --- identities -----------------------------------------------------------------------------


def insert_user(
    conn: Connection, *, name: str, groups: Sequence[str], admin: bool, kind: IdentityKind, now: datetime
) -> None:
    conn.execute(
        users.insert().values(
            name=name,
            kind=kind.value,
            groups=sorted(set(groups)),
            admin=admin,
            disabled=False,
            created_at=now,
        )
    )


def get_identity(conn: Connection, name: str) -> Identity | None:
    row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()
    return _identity(row) if row is not None and not row["disabled"] else None


def list_users(conn: Connection) -> list[Identity]:
    rows = conn.execute(sa.select(users).order_by(users.c.name)).mappings()
    return [_identity(row) for row in rows]


def _identity(row: RowMapping, source: str = "local") -> Identity:
    return Identity(
        name=row["name"],
        groups=frozenset(row["groups"]),
        admin=bool(row["admin"]),
        kind=IdentityKind(row["kind"]),
        source=source,
    )


# --- requests and reviews -------------------------------------------------------------------


_INSERT_REQUEST = requests.insert()
_INSERT_GRANT = grants.insert()


def insert_request(conn: Connection, req: AccessRequest) -> None:
    # Plain parameter dicts against a prebuilt statement: compiled once, cached, no per-call build.
    conn.execute(
        _INSERT_REQUEST,
        {
            "id": req.id,
            "kind": req.kind.value,
            "requester": req.requester,
            "role": req.role,
            "targets": list(req.targets),
            "reason": req.reason,
            "duration_s": int(req.duration.total_seconds()),
            "state": req.state.value,
            "created_at": req.created_at,
            "review_deadline": req.review_deadline,
            "start_at": req.start_at,
            "extends_grant_id": req.extends_grant_id,
            "break_glass": req.break_glass,
            "auto_approved": req.auto_approved_rule,
            "decided_at": req.decided_at,
        },
    )


def get_request(conn: Connection, request_id: str, *, lock: bool = False) -> AccessRequest | None:
    query = sa.select(requests).where(requests.c.id == request_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return _request(row) if row is not None else None


def locked_request(conn: Connection, request_id: str) -> AccessRequest:
    """The request, row-locked; ``NotFound`` if there is none."""
    req = get_request(conn, request_id, lock=True)
    if req is None:
        raise NotFound(f"no request {request_id}")
    return req


def set_request_state(
    conn: Connection, request_id: str, *, expect: RequestState, state: RequestState, now: datetime
) -> bool:
    """Compare-and-set: moves the request only if it is still in ``expect``. Returns whether it did."""
    result = conn.execute(
        requests.update()
        .where(requests.c.id == request_id, requests.c.state == expect.value)
        .values(state=state.value, decided_at=now)
    )
    return result.rowcount == 1


def pending_count_of(conn: Connection, requester: str) -> int:
    """How many of ``requester``'s requests wait for review (extensions included)."""
    query = sa.select(sa.func.count()).where(
        requests.c.requester == requester, requests.c.state == RequestState.PENDING.value
    )
    return int(conn.execute(query).scalar_one())


def lock_requester(conn: Connection, requester: str) -> None:
    """Serialize this requester's submissions until the transaction ends.

    SQLite's write transaction already holds the one write lock. On PostgreSQL a transaction-scoped
    advisory lock keyed by the name works even for identities without a ``users`` row (OIDC).
    """
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(b"jitgate-requester\x00" + requester.encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def pending_requests_of(conn: Connection, requester: str) -> list[AccessRequest]:
    """Every request of ``requester`` still waiting for review, however many (no page limit)."""
    query = sa.select(requests).where(
        requests.c.requester == requester, requests.c.state == RequestState.PENDING.value
    )
    return [_request(row) for row in conn.execute(query).mappings()]


def pending_extensions(conn: Connection, grant_id: str) -> list[AccessRequest]:
    query = sa.select(requests).where(
        requests.c.extends_grant_id == grant_id, requests.c.state == RequestState.PENDING.value
    )
    return [_request(row) for row in conn.execute(query).mappings()]


def extensions_of(conn: Connection, grant_id: str) -> list[AccessRequest]:
    """Every request to lengthen ``grant_id``, whatever became of it, oldest first."""
    query = (
        sa.select(requests)
        .where(requests.c.extends_grant_id == grant_id)
        .order_by(requests.c.created_at, requests.c.id)
    )
    return [_request(row) for row in conn.execute(query).mappings()]


def _request(row: RowMapping) -> AccessRequest:
    return AccessRequest(
        id=row["id"],
        kind=RequestKind(row["kind"]),
        requester=row["requester"],
        role=row["role"],
        targets=tuple(row["targets"]),
        reason=row["reason"],
        duration=timedelta(seconds=row["duration_s"]),
        state=RequestState(row["state"]),
        created_at=row["created_at"],
        review_deadline=row["review_deadline"],
        start_at=row["start_at"],
        extends_grant_id=row["extends_grant_id"],
        break_glass=bool(row["break_glass"]),
        auto_approved_rule=row["auto_approved"],
        decided_at=row["decided_at"],
    )


def insert_review(conn: Connection, request_id: str, review: Review) -> None:
    conn.execute(
        reviews.insert().values(
            request_id=request_id,
            reviewer=review.reviewer,
            verdict=review.verdict.value,
            comment=review.comment,
            at=review.at,
        )
    )


def reviews_of(conn: Connection, request_id: str) -> list[Review]:
    rows = conn.execute(
        sa.select(reviews).where(reviews.c.request_id == request_id).order_by(reviews.c.id)
    ).mappings()
    return [
        Review(reviewer=r["reviewer"], verdict=Verdict(r["verdict"]), comment=r["comment"], at=r["at"])
        for r in rows
    ]


# --- grants ---------------------------------------------------------------------------------


def insert_grant(conn: Connection, grant: Grant) -> None:
    conn.execute(
        _INSERT_GRANT,
        {
            "id": grant.id,
            "request_id": grant.request_id,
            "holder": grant.holder,
            "role": grant.role,
            "targets": list(grant.targets),
            "state": grant.state.value,
            "starts_at": grant.starts_at,
            "expires_at": grant.expires_at,
            "break_glass": grant.break_glass,
            "expiry_warned": False,
        },
    )


# Prebuilt statements for the lookups on every credential issuance: building a select costs
# more than running it on SQLite, and a prebuilt one is compiled once and found in the cache.
_GET_GRANT = sa.select(grants).where(grants.c.id == sa.bindparam("grant_id"))
_GET_GRANT_LOCKED = _GET_GRANT.with_for_update()
_ACTIVE_GRANTS_OF_HOLDER = sa.select(grants).where(
    grants.c.holder == sa.bindparam("holder"),
    grants.c.state == RequestState.ACTIVE.value,
    grants.c.starts_at <= sa.bindparam("now", type_=grants.c.starts_at.type),
    grants.c.expires_at > sa.bindparam("now", type_=grants.c.expires_at.type),
)


def get_grant(conn: Connection, grant_id: str, *, lock: bool = False) -> Grant | None:
    query = _GET_GRANT_LOCKED if lock else _GET_GRANT
    row = conn.execute(query, {"grant_id": grant_id}).mappings().first()
    return _grant(row) if row is not None else None


def grants_by_id(conn: Connection, grant_ids: Sequence[str], *, lock: bool = False) -> dict[str, Grant]:
    """The grants with these ids that exist; ``lock`` row-locks them in id order (no deadlocks)."""
    if not grant_ids:
        return {}
    query = _GRANTS_BY_ID_LOCKED if lock else _GRANTS_BY_ID
    rows = conn.execute(query, {"ids": sorted(set(grant_ids))}).mappings()
    return {g.id: g for g in (_grant(row) for row in rows)}


_GRANTS_BY_ID = (
    sa.select(grants).where(grants.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(grants.c.id)
)
_GRANTS_BY_ID_LOCKED = _GRANTS_BY_ID.with_for_update()


def locked_grant(conn: Connection, grant_id: str) -> Grant:
    """The grant, row-locked; ``NotFound`` if there is none."""
    grant = get_grant(conn, grant_id, lock=True)
    if grant is None:
        raise NotFound(f"no grant {grant_id}")
    return grant


def grant_of_request(conn: Connection, request_id: str) -> Grant | None:
    row = conn.execute(sa.select(grants).where(grants.c.request_id == request_id)).mappings().first()
    return _grant(row) if row is not None else None


def end_grant(
    conn: Connection,
    grant_id: str,
    *,
    expect: Sequence[RequestState],
    state: RequestState,
    reason: GrantEnd,
    now: datetime,
) -> bool:
    """Compare-and-set the grant's end; exactly one caller wins, however many replicas race."""
    result = conn.execute(
        grants.update()
        .where(grants.c.id == grant_id, grants.c.state.in_([s.value for s in expect]))
        .values(state=state.value, ended_at=now, end_reason=reason.value)
    )
    return result.rowcount == 1


def set_grant_state(conn: Connection, grant_id: str, *, expect: RequestState, state: RequestState) -> bool:
    result = conn.execute(
        grants.update()
        .where(grants.c.id == grant_id, grants.c.state == expect.value)
        .values(state=state.value)
    )
    return result.rowcount == 1


def set_grant_expiry(conn: Connection, grant_id: str, expires_at: datetime) -> None:
    conn.execute(
        grants.update().where(grants.c.id == grant_id).values(expires_at=expires_at, expiry_warned=False)
    )


def mark_expiry_warned(conn: Connection, grant_id: str) -> None:
    conn.execute(grants.update().where(grants.c.id == grant_id).values(expiry_warned=True))


def list_grants(
    conn: Connection,
    *,
    holder: str | None = None,
    states: Sequence[RequestState] = (),
    limit: int | None = 200,
) -> list[Grant]:
    """Grants newest first; ``limit=None`` for all of them (when every one must be acted on)."""
    query = sa.select(grants).order_by(grants.c.starts_at.desc()).limit(limit)
    if holder is not None:
        query = query.where(grants.c.holder == holder)
    if states:
        query = query.where(grants.c.state.in_([s.value for s in states]))
    return [_grant(row) for row in conn.execute(query).mappings()]


def active_grants_of(conn: Connection, holder: str, now: datetime) -> list[Grant]:
    """Grants in force now for this holder."""
    rows = conn.execute(_ACTIVE_GRANTS_OF_HOLDER, {"holder": holder, "now": now}).mappings()
    return [_grant(row) for row in rows]


def due_grants(
    conn: Connection, *, state: RequestState, column: str, now: datetime, limit: int, skip_locked: bool
) -> list[Grant]:
    """Grants in ``state`` whose ``column`` (expires_at or starts_at) has come, oldest first."""
    col = grants.c[column]
    query = sa.select(grants).where(grants.c.state == state.value, col <= now).order_by(col).limit(limit)
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return [_grant(row) for row in conn.execute(query).mappings()]


def expiring_unwarned(conn: Connection, *, now: datetime, within: timedelta, limit: int) -> list[Grant]:
    query = (
        sa.select(grants)
        .where(
            grants.c.state == RequestState.ACTIVE.value,
            grants.c.expiry_warned.is_(False),
            grants.c.expires_at <= now + within,
        )
        .order_by(grants.c.expires_at)
        .limit(limit)
    )
    return [_grant(row) for row in conn.execute(query).mappings()]


def due_timeouts(conn: Connection, *, now: datetime, limit: int, skip_locked: bool) -> list[AccessRequest]:
    query = (
        sa.select(requests)
        .where(requests.c.state == RequestState.PENDING.value, requests.c.review_deadline <= now)
        .order_by(requests.c.review_deadline)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return [_request(row) for row in conn.execute(query).mappings()]


def next_lifecycle_deadline(conn: Connection) -> datetime | None:
    """The earliest start, expiry or review deadline to come; the lifecycle loop sleeps until then."""
    candidates = [
        sa.select(sa.func.min(grants.c.expires_at)).where(grants.c.state == RequestState.ACTIVE.value),
        sa.select(sa.func.min(grants.c.starts_at)).where(grants.c.state == RequestState.APPROVED.value),
        sa.select(sa.func.min(requests.c.review_deadline)).where(
            requests.c.state == RequestState.PENDING.value
        ),
    ]
    # min() keeps the column's type, so these come back as aware datetimes.
    values: list[datetime] = [v for q in candidates if (v := conn.execute(q).scalar()) is not None]
    return min(values, default=None)


def _grant(row: RowMapping) -> Grant:
    return Grant(
        id=row["id"],
        request_id=row["request_id"],
        holder=row["holder"],
        role=row["role"],
        targets=tuple(row["targets"]),
        starts_at=row["starts_at"],
        expires_at=row["expires_at"],
        state=RequestState(row["state"]),
        ended_at=row["ended_at"],
        end_reason=GrantEnd(row["end_reason"]) if row["end_reason"] else None,
        break_glass=bool(row["break_glass"]),
    )


# Row builders for the keyset pages in ``paging``.
request_of_row = _request
grant_of_row = _grant
