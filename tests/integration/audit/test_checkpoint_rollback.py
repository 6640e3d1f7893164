"""The checkpoint outside the database catches a log rolled back to an old signed head and then
extended again by the broker: the record at the checkpointed number is there, but another one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from jitgate.audit import checkpoint
from jitgate.audit.chain import AuditLog, read_head
from jitgate.clock import FrozenClock
from jitgate.store.db import Database
from jitgate.store.tables import audit_events, audit_head


def _append(db: Database, audit: AuditLog, clock: FrozenClock, reason: str) -> None:
    clock.advance(timedelta(seconds=1))
    with db.write() as conn:
        audit.append(
            conn, at=clock.now(), actor="alice", action="request.created", details={"reason": reason}
        )


def test_a_log_rolled_back_and_extended_again_differs_from_its_checkpoint(
    db: Database, audit: AuditLog, clock: FrozenClock, tmp_path: Path
) -> None:
    _append(db, audit, clock, "INC-1")
    with db.read() as conn:
        old_head = dict(conn.execute(sa.select(audit_head)).mappings().one())
    _append(db, audit, clock, "INC-2")
    _append(db, audit, clock, "INC-3")
    saved = checkpoint.Writer(tmp_path / "checkpoint.json")
    with db.read() as conn:
        head = read_head(conn)
        assert head is not None
        assert head.seq == 3
        assert saved.update(head)
        assert checkpoint.check(conn, saved.path, audit.public_key).ok

    with db.engine.begin() as conn:  # the database's administrator puts back the old head
        conn.execute(audit_events.delete().where(audit_events.c.seq > 1))
        conn.execute(audit_head.delete())
        conn.execute(audit_head.insert().values(**old_head))
    _append(db, audit, clock, "INC-2, told differently")
    _append(db, audit, clock, "INC-3, told differently")

    with db.read() as conn:
        result = checkpoint.check(conn, saved.path, audit.public_key)
    assert not result.ok
    assert "record 3 differs from its checkpoint" in result.problem
