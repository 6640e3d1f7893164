"""The audit chain on real databases: append in the caller's transaction, verify, tampering, export.

Every test runs on a SQLite file and on the local PostgreSQL server (a fresh database per module,
dropped afterwards). Tampering is done the way an intruder with database access would do it:
plain SQL on the tables, without the audit key.
"""

from __future__ import annotations

import io
import json
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jitgate.audit import keys
from jitgate.audit.canonical import canonical_json, record_hash
from jitgate.audit.chain import AuditLog, read_head
from jitgate.audit.query import export, query
from jitgate.audit.verify import VerifyResult, verify
from jitgate.clock import FrozenClock
from jitgate.errors import InvalidInput, StorageUnavailable
from jitgate.store.db import Database
from jitgate.store.tables import audit_events, audit_head

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def append(db: Database, log: AuditLog, clock: FrozenClock, n: int, *, actor: str = "alice") -> list[int]:
    seqs = []
    for i in range(n):
        clock.advance(timedelta(seconds=1))
        with db.write() as conn:
            seqs.append(
                log.append(
                    conn,
                    at=clock.now(),
                    actor=actor,
                    action="request.created",
                    request_id=f"req{i}",
                    role="prod-shell" if i % 2 else "orders-read",
                    target="web-prod-1",
                    details={"reason": f"INC-{i}", "n": i},
                )
            )
    return seqs


def check(db: Database, log: AuditLog) -> VerifyResult:
    with db.read() as conn:
        return verify(conn, log.public_key)


def tamper(db: Database, *statements: sa.Executable) -> None:
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def row(db: Database, seq: int) -> sa.Row[tuple[str, str, str]]:
    with db.read() as conn:
        return conn.execute(
            sa.select(audit_events.c.body, audit_events.c.prev_hash, audit_events.c.hash).where(
                audit_events.c.seq == seq
            )
        ).one()


def assert_broken(result: VerifyResult, first_bad: int, words: str) -> None:
    assert not result.ok
    assert result.first_bad_seq == first_bad, result.problem
    assert words in result.problem
    assert "\n" not in result.problem


def test_empty_log_verifies(db: Database, log: AuditLog) -> None:
    assert check(db, log) == VerifyResult(True, 0, None, "")


def test_intact_chain_verifies_and_numbers_from_one(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    assert append(db, log, clock, 10) == list(range(1, 11))
    with db.write() as conn:  # several records in one transaction
        for _ in range(5):
            log.append(conn, at=clock.now(), actor="bob", action="review.approved", request_id="req1")
    assert check(db, log) == VerifyResult(True, 15, None, "")


def test_another_process_with_the_same_key_continues_the_chain(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    first = AuditLog(keys.load_for(tmp_path / "data"))
    append(db, first, clock, 3)
    second = AuditLog(keys.load_for(tmp_path / "data"))
    assert append(db, second, clock, 2) == [4, 5]
    assert check(db, first).ok


def test_edited_body_is_named(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 12)
    forged = row(db, 7).body.replace('"alice"', '"mallory"')
    tamper(db, audit_events.update().where(audit_events.c.seq == 7).values(body=forged))
    assert_broken(check(db, log), 7, "record 7: hash does not match its contents")


def test_edited_hash_is_named(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 12)
    tamper(db, audit_events.update().where(audit_events.c.seq == 7).values(hash="f" * 64))
    assert_broken(check(db, log), 7, "record 7: hash does not match its contents")


def test_rewritten_record_with_recomputed_hash_breaks_the_next_link(
    db: Database, log: AuditLog, clock: FrozenClock
) -> None:
    append(db, log, clock, 12)
    old = row(db, 7)
    forged = old.body.replace('"alice"', '"mallory"')
    tamper(
        db,
        audit_events.update()
        .where(audit_events.c.seq == 7)
        .values(body=forged, actor="mallory", hash=record_hash(old.prev_hash, forged)),
    )
    assert_broken(check(db, log), 8, "record 8: does not link to record 7")


def test_rewritten_last_record_differs_from_the_signed_head(
    db: Database, log: AuditLog, clock: FrozenClock
) -> None:
    append(db, log, clock, 5)
    old = row(db, 5)
    forged = old.body.replace('"alice"', '"mallory"')
    tamper(
        db,
        audit_events.update()
        .where(audit_events.c.seq == 5)
        .values(body=forged, actor="mallory", hash=record_hash(old.prev_hash, forged)),
    )
    assert_broken(check(db, log), 5, "record 5: hash differs from the signed head")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "mallory"),
        ("action", "grant.revoked"),
        ("request_id", "other"),
        ("grant_id", "g9"),
        ("role", "admin"),
        ("at", START - timedelta(days=1)),
    ],
)
def test_edited_filter_column_is_named(
    db: Database, log: AuditLog, clock: FrozenClock, column: str, value: object
) -> None:
    append(db, log, clock, 12)
    tamper(db, audit_events.update().where(audit_events.c.seq == 9).values({column: value}))
    assert_broken(check(db, log), 9, f"record 9: column {column} is")


def test_deleted_middle_record_is_named(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 12)
    tamper(db, audit_events.delete().where(audit_events.c.seq == 6))
    result = check(db, log)
    assert_broken(result, 6, "record 6 missing: the chain jumps from 5 to 7")
    assert result.count == 5


def test_deleted_first_record_is_named(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 3)
    tamper(db, audit_events.delete().where(audit_events.c.seq == 1))
    assert_broken(check(db, log), 1, "record 1 missing: the chain starts at 2 (deleted?)")


def test_swapped_records_are_named(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 12)
    seq = audit_events.c.seq
    tamper(
        db,
        audit_events.update().where(seq == 4).values(seq=-4),
        audit_events.update().where(seq == 6).values(seq=4),
        audit_events.update().where(seq == -4).values(seq=6),
    )
    assert_broken(check(db, log), 4, "record 4: its body says it is record 6 (reordered?)")


def test_truncated_tail_is_detected_by_the_signed_head(
    db: Database, log: AuditLog, clock: FrozenClock
) -> None:
    append(db, log, clock, 12)
    tamper(db, audit_events.delete().where(audit_events.c.seq > 9))
    result = check(db, log)
    assert_broken(result, 10, "chain ends at record 9 but the signed head says 12 (tail truncated?)")
    assert result.count == 9


def test_truncated_tail_with_a_rewritten_head_is_detected(
    db: Database, log: AuditLog, clock: FrozenClock
) -> None:
    append(db, log, clock, 12)
    with db.read() as conn:
        signature = read_head(conn).signature  # type: ignore[union-attr]
    tamper(
        db,
        audit_events.delete().where(audit_events.c.seq > 9),
        audit_head.update().values(seq=9, hash=row(db, 9).hash, signature=signature),
    )
    assert_broken(check(db, log), 10, "is not signed by this audit key")


def test_deleted_head_is_detected(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 4)
    tamper(db, audit_head.delete())
    assert_broken(check(db, log), 5, "the signed head is missing but the chain has 4 records")


def test_records_beyond_the_signed_head_are_detected(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 4)
    with db.read() as conn:
        head = read_head(conn)
    append(db, log, clock, 2)
    assert head is not None
    tamper(db, audit_head.update().values(seq=head.seq, hash=head.hash, signature=head.signature))
    assert_broken(check(db, log), 5, "records after 4 are not covered by the signed head")


def test_a_different_key_does_not_verify(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 3)
    with db.read() as conn:
        result = verify(conn, Ed25519PrivateKey.generate().public_key())
    assert_broken(result, 4, "not signed by this audit key")


def test_append_refuses_to_extend_a_tampered_chain(
    db: Database, log: AuditLog, clock: FrozenClock, tmp_path: Path
) -> None:
    """The broker must not re-sign, and so launder, a head an intruder rewrote or removed."""
    append(db, log, clock, 6)
    tamper(
        db,
        audit_events.delete().where(audit_events.c.seq > 4),
        audit_head.update().values(seq=4, hash=row(db, 4).hash),
    )
    fresh = AuditLog(keys.load_for(tmp_path / "data"))  # a restarted broker: no memory of its heads
    for writer in (log, fresh):
        with (
            pytest.raises(StorageUnavailable, match="not signed by this broker's audit key"),
            db.write() as conn,
        ):
            writer.append(conn, at=clock.now(), actor="alice", action="request.created")
    tamper(db, audit_head.delete())
    with (
        pytest.raises(StorageUnavailable, match="head is missing but records up to 4 exist"),
        db.write() as conn,
    ):
        log.append(conn, at=clock.now(), actor="alice", action="request.created")
    assert not check(db, log).ok


def test_rolled_back_transaction_leaves_no_record(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 3)

    class Boom(Exception):
        pass

    def revoke_then_fail() -> None:
        with db.write() as conn:
            assert log.append(conn, at=clock.now(), actor="alice", action="grant.revoked", grant_id="g1") == 4
            raise Boom

    with pytest.raises(Boom):
        revoke_then_fail()
    with db.read() as conn:
        assert query(conn, action="grant.revoked") == []
    assert check(db, log) == VerifyResult(True, 3, None, "")
    assert append(db, log, clock, 1) == [4]
    assert check(db, log).ok


def test_concurrent_appends_make_a_gap_free_chain(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    threads, each = 6, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(each):
                with db.write() as conn:
                    log.append(
                        conn, at=clock.now(), actor=f"user{n}", action="request.created", details={"i": i}
                    )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with db.read() as conn:
        seqs = conn.execute(sa.select(audit_events.c.seq).order_by(audit_events.c.seq)).scalars().all()
    assert seqs == list(range(1, threads * each + 1))
    assert check(db, log) == VerifyResult(True, threads * each, None, "")


@pytest.mark.parametrize(
    "details",
    [
        {"password": "hunter2"},
        {"credential": {"private_key": "x"}},
        {"record": {"certificate": "AAAA"}},
        {"key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"},
        {"admin": "postgresql://admin:s3cret@db/orders"},
    ],
)
def test_secret_looking_details_are_refused(
    db: Database, log: AuditLog, clock: FrozenClock, details: dict[str, object]
) -> None:
    append(db, log, clock, 2)
    with db.write() as conn:
        with pytest.raises(ValueError, match="secrets never enter the audit log"):
            log.append(conn, at=clock.now(), actor="alice", action="credential.issued", details=details)
        # The refusal wrote nothing, so the same transaction can go on and the chain stays whole.
        assert log.append(conn, at=clock.now(), actor="alice", action="credential.issued") == 3
    with db.read() as conn:
        bodies = conn.execute(sa.select(audit_events.c.body)).scalars().all()
    assert not any("hunter2" in b or "s3cret" in b or "BEGIN" in b for b in bodies)
    assert check(db, log).ok


def test_malformed_records_are_refused(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    with db.write() as conn:
        with pytest.raises(ValueError, match=r"noun\.verb"):
            log.append(conn, at=clock.now(), actor="alice", action="created")
        with pytest.raises(ValueError, match="actor"):
            log.append(conn, at=clock.now(), actor="", action="request.created")
        with pytest.raises(ValueError, match="naive"):
            log.append(conn, at=datetime(2026, 1, 1), actor="a", action="request.created")  # noqa: DTZ001
    assert check(db, log) == VerifyResult(True, 0, None, "")


def test_append_outside_a_transaction_is_refused(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    with db.engine.connect() as conn, pytest.raises(RuntimeError, match="inside the caller's transaction"):
        log.append(conn, at=clock.now(), actor="alice", action="request.created")


def test_query_filters_and_pages(db: Database, log: AuditLog, clock: FrozenClock) -> None:
    append(db, log, clock, 6, actor="alice")
    append(db, log, clock, 4, actor="bob")
    with db.read() as conn:
        assert [e.seq for e in query(conn, actor="bob")] == [7, 8, 9, 10]
        assert [e.seq for e in query(conn, role="prod-shell")] == [2, 4, 6, 8, 10]
        assert [e.seq for e in query(conn, request_id="req1")] == [2, 8]
        assert [e.seq for e in query(conn, action="grant.revoked")] == []
        since, until = START + timedelta(seconds=3), START + timedelta(seconds=5)
        assert [e.seq for e in query(conn, since=since, until=until)] == [3, 4]
        assert [e.seq for e in query(conn, limit=3, after_seq=5)] == [6, 7, 8]
        assert [e.seq for e in query(conn, limit=3, newest_first=True)] == [10, 9, 8]
        assert [e.seq for e in query(conn, limit=2, newest_first=True, before_seq=8)] == [7, 6]
        event = query(conn, actor="bob", limit=1)[0]
        with pytest.raises(ValueError, match="limit"):
            query(conn, limit=0)
    assert event.at == START + timedelta(seconds=7)
    assert event.target == "web-prod-1"
    assert event.details == {"n": 0, "reason": "INC-0"}
    assert event.prev_hash == row(db, 6).hash


def test_export_writes_one_verifiable_json_line_per_event(
    db: Database, log: AuditLog, clock: FrozenClock
) -> None:
    append(db, log, clock, 7)
    out = io.StringIO()
    with db.read() as conn:
        assert export(conn, out) == 7
    lines = out.getvalue().splitlines()
    assert len(lines) == 7
    prev = "0" * 64
    for n, line in enumerate(lines, start=1):
        record = json.loads(line)
        assert record["seq"] == n
        assert record["prev"] == prev
        digest = record.pop("hash")
        # Anyone can re-check an export without jitgate: canonical body, then the chain.
        assert record_hash(prev, canonical_json(record)) == digest
        prev = digest
    since = io.StringIO()
    with db.read() as conn:
        assert export(conn, since, since=START + timedelta(seconds=6)) == 2
    assert [json.loads(x)["seq"] for x in since.getvalue().splitlines()] == [6, 7]


def test_key_file_is_private_created_once_and_checked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = keys.load_for(data)
    path = keys.default_key_path(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.public_key_hex(keys.load_for(data)) == keys.public_key_hex(key)
    assert keys.public_key_hex(keys.load_for(tmp_path / "elsewhere", path)) == keys.public_key_hex(key)
    assert keys.public_key_from_hex(keys.public_key_hex(key)) == key.public_key()
    path.chmod(0o644)
    with pytest.raises(InvalidInput, match="chmod 600"):
        keys.load_for(data)
    with pytest.raises(InvalidInput, match="does not exist"):
        keys.load_for(data, tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    junk.chmod(0o600)
    with pytest.raises(InvalidInput, match="not an unencrypted PEM"):
        keys.load_signing_key(junk)
