"""Query functions for chat interactions: the signatures already acted on. They never commit."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from jitgate.store.tables import chat_replays


def first_sighting(conn: Connection, signature_hash: str, *, now: datetime, forget_before: datetime) -> bool:
    """Record ``signature_hash`` as seen ``now``: True the first time, False if it was seen already.

    Rows older than ``forget_before`` are deleted on the way: a signature that old is refused by
    its timestamp anyway. The insert is in a savepoint, so a duplicate leaves the transaction usable.
    """
    conn.execute(chat_replays.delete().where(chat_replays.c.seen_at < forget_before))
    try:
        with conn.begin_nested():
            conn.execute(chat_replays.insert().values(signature_hash=signature_hash, seen_at=now))
    except IntegrityError:
        return False
    return True


def seen_count(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(chat_replays)).scalar_one())
