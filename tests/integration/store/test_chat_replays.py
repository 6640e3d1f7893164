"""The signatures of chat interactions already acted on: the same one is refused the second time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from jitgate.store.chat import first_sighting, seen_count
from jitgate.store.db import Database
from jitgate.store.tables import chat_replays

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


def test_a_signature_is_new_once_and_a_repeat_leaves_the_transaction_usable(db: Database) -> None:
    with db.write() as conn:
        assert first_sighting(conn, "a" * 64, now=NOW, forget_before=NOW - WINDOW)
    with db.write() as conn:
        assert not first_sighting(conn, "a" * 64, now=NOW, forget_before=NOW - WINDOW)
        # PostgreSQL aborts a transaction on a failed insert; the savepoint keeps this one going.
        assert first_sighting(conn, "b" * 64, now=NOW, forget_before=NOW - WINDOW)
    with db.read() as conn:
        assert seen_count(conn) == 2


def test_signatures_older_than_the_window_are_forgotten(db: Database) -> None:
    with db.write() as conn:
        first_sighting(conn, "a" * 64, now=NOW, forget_before=NOW - WINDOW)
    later = NOW + WINDOW + timedelta(seconds=1)
    with db.write() as conn:
        assert first_sighting(conn, "b" * 64, now=later, forget_before=later - WINDOW)
    with db.read() as conn:
        kept = conn.execute(sa.select(chat_replays.c.signature_hash)).scalars().all()
    assert kept == ["b" * 64]
