"""The checkpoint outside the database catches a log rolled back to an old signed head and then
extended again (by a process that never saw the newer head): the record at the checkpointed number
is there, but another one, and verification calls it a fork."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from jitgate.audit import checkpoint
from jitgate.audit.chain import AuditLog, read_head
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.audit.verify import verify_anchored
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
        assert saved.update(head, checkpoint.hash_at(conn)).ok
        assert verify_anchored(conn, audit.public_key, checkpoint_path=saved.path).ok

    with db.engine.begin() as conn:  # the database's administrator puts back the old head
        conn.execute(audit_events.delete().where(audit_events.c.seq > 1))
        conn.execute(audit_head.delete())
        conn.execute(audit_head.insert().values(**old_head))
    # A process that never saw the newer head (nor reads the checkpoint) extends the old one.
    unaware = AuditLog(load_or_create_signing_key(tmp_path / "keys" / "audit.pem"))
    _append(db, unaware, clock, "INC-2, told differently")
    _append(db, unaware, clock, "INC-3, told differently")

    with db.read() as conn:
        result = verify_anchored(conn, audit.public_key, checkpoint_path=saved.path)
        assert not saved.update(read_head(conn) or head, checkpoint.hash_at(conn)).ok  # never moves on
    assert not result.ok
    assert result.verdict == "forked"
    assert "record 3" in result.problem
