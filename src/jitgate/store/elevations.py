"""What each grant's elevation holds at a target, item by item: the rows the broker counts on to
take back only what nobody else holds and the account did not hold before. Each function takes a
Connection and never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from jitgate.store.tables import credentials, elevations, revocations

PLANNED, APPLYING, HELD, RELEASED = "planned", "applying", "held", "released"
LIVE = (APPLYING, HELD)
"""States in which the item may be in place at the target because of this row's grant."""
WITHDRAWN, NEVER_APPLIED, HELD_BEFORE = "withdrawn", "never applied", "kept: held before the grant"
KEPT_FOR = "kept: still held under grant "
"""What a withdrawal decides for an item (``decide``), as its row's ``outcome`` records it."""
_ACCOUNT_LOCKS = 0x6A67  # the advisory lock space of accounts (two-key form, apart from the queue's)


def plan(
    conn: Connection,
    *,
    credential_id: int,
    grant_id: str,
    target: str,
    account: str,
    items: Iterable[str],
    now: datetime,
) -> None:
    conn.execute(
        elevations.insert(),
        [
            {
                "credential_id": credential_id,
                "grant_id": grant_id,
                "target": target,
                "account": account,
                "item": item,
                "state": PLANNED,
                "prior": None,
                "created_at": now,
            }
            for item in items
        ],
    )


def of_credential(conn: Connection, credential_id: int) -> list[RowMapping]:
    query = sa.select(elevations).where(elevations.c.credential_id == credential_id).order_by(elevations.c.id)
    return list(conn.execute(query).mappings())


def of_grants(conn: Connection, grant_ids: Sequence[str]) -> list[RowMapping]:
    query = sa.select(elevations).where(elevations.c.grant_id.in_(list(grant_ids))).order_by(elevations.c.id)
    return list(conn.execute(query).mappings())


def detail_of_grants(conn: Connection, grant_ids: Sequence[str]) -> list[RowMapping]:
    """Every elevation item of ``grant_ids``, oldest first, in one statement: each with its
    credential row's ``kind``, ``handle``, ``credential_state`` and ``revoked_at``, and the queue's
    work still pending on it (``work_action``, ``work_attempts``, ``work_last_error``,
    ``work_next_attempt_at``; None when nothing is pending). Found through the credentials of the
    grants, whose grant index serves a page of them."""
    if not grant_ids:
        return []
    work = revocations.alias("work")
    query = (
        sa.select(
            elevations,
            credentials.c.kind,
            credentials.c.handle,
            credentials.c.state.label("credential_state"),
            credentials.c.revoked_at,
            work.c.action.label("work_action"),
            work.c.attempts.label("work_attempts"),
            work.c.last_error.label("work_last_error"),
            work.c.next_attempt_at.label("work_next_attempt_at"),
        )
        .select_from(
            credentials.join(elevations, elevations.c.credential_id == credentials.c.id).outerjoin(
                work, sa.and_(work.c.credential_id == credentials.c.id, work.c.state == "pending")
            )
        )
        .where(credentials.c.grant_id.in_(list(grant_ids)))
        .order_by(elevations.c.id)
    )
    return list(conn.execute(query).mappings())


def lock_account(conn: Connection, *, target: str, account: str) -> None:
    """Take turns with every other transaction that counts holders of ``account`` at ``target``.

    The queue already runs one item per account at a time, but only per spelling of the account
    and only while claims hold; the count itself must not race. SQLite has one writer anyway.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
            {"space": _ACCOUNT_LOCKS, "key": f"{target}\x1f{account}"},
        )


def others_live(
    conn: Connection,
    *,
    target: str,
    account: str,
    item: str,
    besides: int,
    released_since: datetime | None = None,
) -> list[RowMapping]:
    """Rows of other credentials under which ``item`` may be in place for ``account`` right now;
    with ``released_since``, also those applied and released since then (they may explain what
    the target was seen holding at that time)."""
    live: sa.ColumnElement[bool] = elevations.c.state.in_(LIVE)
    if released_since is not None:
        live = sa.or_(
            live,
            sa.and_(
                elevations.c.state == RELEASED,
                elevations.c.prior.is_not(None),
                elevations.c.released_at >= released_since,
            ),
        )
    query = (
        sa.select(elevations)
        .where(
            elevations.c.target == target,
            elevations.c.account == account,
            elevations.c.item == item,
            live,
            elevations.c.credential_id != besides,
        )
        .order_by(elevations.c.id)
    )
    return list(conn.execute(query).mappings())


def mark_applying(conn: Connection, row_id: int, *, account: str, prior: bool) -> None:
    conn.execute(
        elevations.update()
        .where(elevations.c.id == row_id, elevations.c.state == PLANNED)
        .values(state=APPLYING, account=account, prior=prior)
    )


def live_again(conn: Connection, row_ids: Sequence[int]) -> None:
    """Rows released while their elevation was still being applied: it may have landed since."""
    conn.execute(
        elevations.update()
        .where(elevations.c.id.in_(list(row_ids)), elevations.c.state == RELEASED)
        .values(state=APPLYING, released_at=None, outcome=None)
    )


def forget_prior(conn: Connection, *, target: str, account: str, items: Sequence[str], besides: int) -> None:
    """No other live row may keep ``items`` as held before: they were seen while this row's
    elevation was landing unrecorded, so what was seen may have been that."""
    conn.execute(
        elevations.update()
        .where(
            elevations.c.target == target,
            elevations.c.account == account,
            elevations.c.item.in_(list(items)),
            elevations.c.state.in_(LIVE),
            elevations.c.credential_id != besides,
        )
        .values(prior=False)
    )


def mark_held(conn: Connection, credential_id: int) -> None:
    conn.execute(
        elevations.update()
        .where(elevations.c.credential_id == credential_id, elevations.c.state == APPLYING)
        .values(state=HELD)
    )


def mark_released(conn: Connection, row_id: int, *, now: datetime, outcome: str) -> None:
    conn.execute(
        elevations.update()
        .where(elevations.c.id == row_id)
        .values(state=RELEASED, released_at=now, outcome=outcome[:255])
    )


def record_prior(
    conn: Connection,
    credential_id: int,
    *,
    target: str,
    account: str,
    already: frozenset[str],
    seen_at: datetime,
) -> list[RowMapping]:
    """Record for each item not looked at yet whether the account held it before any grant of
    jitgate's did; returns the items to hold. Another grant's row that is live, or was released
    since the target was asked (``seen_at``), may be why the target showed the item: its own
    ``prior`` is passed on instead (False if any of them says so)."""
    for item in of_credential(conn, credential_id):
        if item["state"] != PLANNED:
            continue  # an earlier attempt recorded its prior; the target may hold it by now
        others = others_live(
            conn,
            target=target,
            account=account,
            item=item["item"],
            besides=credential_id,
            released_since=seen_at,
        )
        prior = all(other["prior"] for other in others) if others else item["item"] in already
        mark_applying(conn, item["id"], account=account, prior=prior)
    return [item for item in of_credential(conn, credential_id) if item["state"] != RELEASED]


def decide(conn: Connection, items: Sequence[RowMapping], target: str, credential_id: int) -> dict[int, str]:
    """For each of ``items`` (as read) not released yet: whether to take it away at the target
    (``WITHDRAWN``), or why not, by the other grants' rows as they are now."""
    decisions: dict[int, str] = {}
    for item in items:
        if item["state"] == PLANNED:
            decisions[item["id"]] = NEVER_APPLIED
        elif item["state"] in LIVE:
            others = others_live(
                conn, target=target, account=item["account"], item=item["item"], besides=credential_id
            )
            if others:
                decisions[item["id"]] = KEPT_FOR + str(others[0]["grant_id"])
            elif item["prior"]:
                decisions[item["id"]] = HELD_BEFORE
            else:
                decisions[item["id"]] = WITHDRAWN
    return decisions
