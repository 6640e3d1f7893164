"""Rolling the audit log back to an old signed head, on real databases (SQLite and PostgreSQL).

The attack: whoever administers the database saves a signed head, lets the log grow (a
break-glass grant, say), deletes the records after the saved head and puts it back. Chain and
head then agree, so only the broker's memory of newer heads (in memory, and in the checkpoint
file outside the database) and the witnesses can tell. The broker must refuse to append from
such a head, the checkpoint must not follow the log back or onto a regrown chain, and
verification must call it a rollback (or a fork).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from jitgate.audit import checkpoint, keys, witness
from jitgate.audit.chain import AuditLog, SignedHead, read_head
from jitgate.audit.verify import VerifyResult, verify, verify_anchored
from jitgate.clock import FrozenClock
from jitgate.errors import AuditIntegrityError, AuditRolledBack, StorageUnavailable
from jitgate.store.db import Database
from jitgate.store.tables import audit_events, audit_head


def broker_log(tmp_path: Path) -> AuditLog:
    """The audit log of a broker process on the data directory under ``tmp_path``."""
    data = tmp_path / "data"
    return AuditLog(keys.load_for(data), checkpoint_path=checkpoint.default_path(data))


def append(db: Database, log: AuditLog, clock: FrozenClock, n: int, action: str = "request.created") -> None:
    for _ in range(n):
        clock.advance(timedelta(seconds=1))
        with db.write() as conn:
            log.append(conn, at=clock.now(), actor="alice", action=action, role="prod-shell")


def head(db: Database) -> SignedHead:
    with db.read() as conn:
        found = read_head(conn)
    assert found is not None
    return found


def save_checkpoint(db: Database, tmp_path: Path) -> checkpoint.CheckpointResult:
    """What the scheduler does every second: copy the head out of the database."""
    writer = checkpoint.Writer(checkpoint.default_path(tmp_path / "data"), interval=0)
    with db.read() as conn:
        return writer.update(head(db), checkpoint.hash_at(conn))


def roll_back(db: Database, saved: SignedHead) -> None:
    """The attack, in plain SQL: cut the records after ``saved`` and put ``saved`` back."""
    with db.engine.begin() as conn:
        conn.execute(audit_events.delete().where(audit_events.c.seq > saved.seq))
        conn.execute(audit_head.update().values(seq=saved.seq, hash=saved.hash, signature=saved.signature))


def anchored(db: Database, log: AuditLog, tmp_path: Path, *witness_files: Path) -> VerifyResult:
    with db.read() as conn:
        return verify_anchored(
            conn,
            log.public_key,
            checkpoint_path=checkpoint.default_path(tmp_path / "data"),
            witness_files=witness_files,
        )


def count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar_one())


def test_the_broker_refuses_to_append_from_a_head_older_than_one_it_saw(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    log = broker_log(tmp_path)
    append(db, log, clock, 3)
    saved = head(db)
    append(db, log, clock, 2, action="break_glass.used")
    roll_back(db, saved)
    with db.read() as conn:
        assert verify(conn, log.public_key).ok  # the chain alone looks intact
    with (
        pytest.raises(AuditRolledBack, match=r"^audit log rolled back: head 5 seen, database at 3; "),
        db.write() as conn,
    ):
        log.append(conn, at=clock.now(), actor="alice", action="request.created")
    assert count(db) == 3
    assert log.problem is not None
    assert "head 5 seen, database at 3" in log.problem
    # One exception type for every refusal to extend the chain, still a storage failure (503, exit 9).
    assert issubclass(AuditRolledBack, AuditIntegrityError)
    assert issubclass(AuditIntegrityError, StorageUnavailable)


def test_a_restarted_broker_remembers_the_newest_head_through_the_checkpoint(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    append(db, broker_log(tmp_path), clock, 3)
    saved = head(db)
    append(db, broker_log(tmp_path), clock, 2)
    assert save_checkpoint(db, tmp_path).ok
    roll_back(db, saved)
    restarted = broker_log(tmp_path)  # no memory of its own: only the file
    with pytest.raises(AuditRolledBack, match="head 5 seen, database at 3"), db.write() as conn:
        restarted.append(conn, at=clock.now(), actor="alice", action="request.created")
    with db.read() as conn, pytest.raises(AuditRolledBack):
        restarted.check_head(conn)  # what the scheduler runs every pass, for the health


def test_another_process_on_the_same_database_sees_the_rollback_through_the_checkpoint(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    first, second = broker_log(tmp_path), broker_log(tmp_path)
    append(db, second, clock, 1)  # the second process saw record 1 only
    saved = head(db)
    append(db, first, clock, 4)
    assert save_checkpoint(db, tmp_path).ok  # the first process's scheduler checkpoints 5
    roll_back(db, saved)
    with pytest.raises(AuditRolledBack, match="head 5 seen, database at 1"), db.write() as conn:
        second.append(conn, at=clock.now(), actor="alice", action="request.created")


def test_processes_taking_turns_on_one_chain_raise_no_false_alarm(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    first, second = broker_log(tmp_path), broker_log(tmp_path)
    for _ in range(5):
        append(db, first, clock, 2)
        append(db, second, clock, 1)
        assert save_checkpoint(db, tmp_path).ok
    assert (first.problem, second.problem) == (None, None)
    assert anchored(db, first, tmp_path).ok


def test_a_transaction_that_rolls_back_does_not_count_as_seen(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    """Only a committed head raises the mark: a failed step must not look like a rollback later."""
    log = broker_log(tmp_path)
    append(db, log, clock, 2)

    def failing_step() -> None:
        with db.write() as conn:
            log.append(conn, at=clock.now(), actor="alice", action="request.created")
            raise RuntimeError("the step fails after its audit record")

    with pytest.raises(RuntimeError):
        failing_step()
    append(db, log, clock, 1)
    assert head(db).seq == 3


def test_a_log_rolled_back_and_regrown_past_the_checkpoint_does_not_move_it(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    """Regrown by a writer that never saw the checkpoint (a copy of the broker elsewhere with the key)."""
    log = broker_log(tmp_path)
    append(db, log, clock, 3)
    saved = head(db)
    append(db, log, clock, 2, action="break_glass.used")
    assert save_checkpoint(db, tmp_path).ok
    checkpointed = checkpoint.read(checkpoint.default_path(tmp_path / "data"))
    roll_back(db, saved)
    oblivious = AuditLog(keys.load_for(tmp_path / "data"))
    append(db, oblivious, clock, 4)  # records 4..7: the chain is longer than the checkpoint again
    moved = save_checkpoint(db, tmp_path)
    assert (moved.ok, moved.verdict) == (False, "forked")
    assert checkpoint.read(checkpoint.default_path(tmp_path / "data")) == checkpointed
    result = anchored(db, log, tmp_path)
    assert (result.ok, result.verdict) == (False, "forked")
    assert "record 5 differs from the head checkpointed" in result.problem
    with pytest.raises(AuditRolledBack, match="audit log forked: record 5 differs"), db.write() as conn:
        log.append(conn, at=clock.now(), actor="alice", action="request.created")


def test_verify_names_a_rollback_behind_the_checkpoint(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    log = broker_log(tmp_path)
    append(db, log, clock, 3)
    saved = head(db)
    append(db, log, clock, 2)
    assert save_checkpoint(db, tmp_path).ok
    assert anchored(db, log, tmp_path).anchors == "checkpointed head at record 5 matches"
    roll_back(db, saved)
    result = anchored(db, log, tmp_path)
    assert (result.ok, result.verdict) == (False, "rolled_back")
    assert result.problem == "audit log rolled back: head 5 checkpointed, database at 3"


def test_putting_the_cut_records_back_clears_the_refusal(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    log = broker_log(tmp_path)
    append(db, log, clock, 3)
    saved = head(db)
    append(db, log, clock, 2)
    newest = head(db)
    with db.read() as conn:
        cut = [dict(r._mapping) for r in conn.execute(sa.select(audit_events).where(audit_events.c.seq > 3))]
    roll_back(db, saved)
    with db.read() as conn, pytest.raises(AuditRolledBack):
        log.check_head(conn)
    with db.engine.begin() as conn:  # restored from a backup
        conn.execute(audit_events.insert(), cut)
        conn.execute(audit_head.update().values(seq=newest.seq, hash=newest.hash, signature=newest.signature))
    with db.read() as conn:
        assert log.check_head(conn) == newest
    assert log.problem is None
    append(db, log, clock, 1)


def witness_file(tmp_path: Path, log: AuditLog, *heads: SignedHead) -> Path:
    path = tmp_path / "witness" / "heads.jsonl"
    path.parent.mkdir(exist_ok=True)
    with path.open("a") as handle:
        for signed in heads:
            handle.write(witness.line(signed, log.public_key, datetime(2026, 3, 1, tzinfo=UTC)) + "\n")
    return path


def test_a_witness_file_catches_a_rollback_and_a_fork(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    """Even with the checkpoint gone along with the data directory, the witness remembers."""
    log = AuditLog(keys.load_for(tmp_path / "data"))
    append(db, log, clock, 3)
    saved = head(db)
    append(db, log, clock, 2)
    witnessed = witness_file(tmp_path, log, saved, head(db))
    result = anchored(db, log, tmp_path, witnessed)
    assert result.ok, result.problem
    assert "2 heads witnessed in" in result.anchors
    roll_back(db, saved)
    result = anchored(db, log, tmp_path, witnessed)
    assert (result.ok, result.verdict) == (False, "rolled_back")
    assert f"head 5 witnessed in {witnessed}, database at 3" in result.problem
    append(db, AuditLog(keys.load_for(tmp_path / "data")), clock, 3)  # regrown to 6: another record 5
    result = anchored(db, log, tmp_path, witnessed)
    assert (result.ok, result.verdict) == (False, "forked")
    assert "record 5 differs" in result.problem


def test_a_witness_line_not_signed_by_the_audit_key_is_refused(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    log = AuditLog(keys.load_for(tmp_path / "data"))
    append(db, log, clock, 2)
    forged = SignedHead(9, "a" * 64, "00" * 64)
    result = anchored(db, log, tmp_path, witness_file(tmp_path, log, forged))
    assert (result.ok, result.verdict) == (False, "broken")
    assert "not signed by this audit key" in result.problem
