"""What each grant's elevation holds at a target, item by item: the rows the broker counts on to
take back only what nobody else holds and the account did not hold before. Each function takes a
Connection and never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from jitgate.store.tables import elevations

PLANNED, APPLYING, HELD, RELEASED = "planned", "applying", "held", "released"
LIVE = (APPLYING, HELD)
"""States in which the item may be in place at the target because of this row's grant."""


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


def others_live(conn: Connection, *, target: str, account: str, item: str, besides: int) -> list[RowMapping]:
    """Rows of other credentials under which ``item`` may be in place for ``account`` right now."""
    query = (
        sa.select(elevations)
        .where(
            elevations.c.target == target,
            elevations.c.account == account,
            elevations.c.item == item,
            elevations.c.state.in_(LIVE),
            elevations.c.credential_id != besides,
        )
        .order_by(elevations.c.id)
    )
    return list(conn.execute(query).mappings())


def mark_applying(conn: Connection, row_id: int, *, account: str, prior: bool) -> None:
    conn.execute(
        elevations.update()
        .where(elevations.c.id == row_id)
        .values(state=APPLYING, account=account, prior=prior)
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
