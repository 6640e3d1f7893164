"""Reading the audit log by a noun's actions (``grant.``) and by grant, on SQLite and PostgreSQL:
exactly the noun's records, newest first, in pages that fit together, whatever the collation."""

from __future__ import annotations

from datetime import timedelta

from jitgate.audit.chain import AuditLog
from jitgate.audit.query import actions_with_prefix, query
from jitgate.clock import FrozenClock
from jitgate.store.db import Database

ACTIONS = (
    "grant.activated",
    "granted.oddly",
    "grant.revoked",
    "grant_x.made",
    "review.approved",
    "grant.expired",
)


def fill(db: Database, log: AuditLog, clock: FrozenClock, n: int) -> None:
    with db.write() as conn:
        for i in range(n):
            clock.advance(timedelta(seconds=1))
            log.append(
                conn, at=clock.now(), actor="alice", action=ACTIONS[i % len(ACTIONS)], grant_id=f"g-{i % 4}"
            )


def test_a_nouns_actions_are_exactly_those_with_its_dot(
    db: Database, log: AuditLog, clock: FrozenClock
) -> None:
    fill(db, log, clock, 60)
    with db.read() as conn:
        assert actions_with_prefix(conn, "grant.") == ["grant.activated", "grant.expired", "grant.revoked"]
        assert actions_with_prefix(conn, "nothing.") == []
        everything = query(conn, limit=1000, newest_first=True)
        wanted = [e.seq for e in everything if e.action.startswith("grant.")]
        pages, before = [], None
        while True:
            page = query(conn, action="grant.", limit=7, before_seq=before, newest_first=True)
            if not page:
                break
            pages.append([e.seq for e in page])
            before = page[-1].seq
        assert [seq for p in pages for seq in p] == wanted
        assert all(len(p) == 7 for p in pages[:-1])
        forwards = query(conn, action="grant.", limit=1000, after_seq=wanted[-1] - 1)
        assert [e.seq for e in forwards] == sorted(wanted)
        by_grant = query(conn, grant_id="g-1", action="grant.", limit=1000)
        assert [e.seq for e in by_grant] == sorted(
            e.seq for e in everything if e.grant_id == "g-1" and e.action.startswith("grant.")
        )
