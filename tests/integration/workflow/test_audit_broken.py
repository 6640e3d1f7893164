"""Taking access away never waits for a broken audit log; granting does.

With the audit log damaged (its signed head edited or deleted, a record slipped in past it), grants
are still revoked and expire on time, their credentials are still revoked at the target, and the
records that could not be chained are parked in the same transaction. Granting is refused. Once
the log is repaired, or can be extended again, the parked records are appended in order behind a
record that says they were parked. A failure of the database itself is not mistaken for any of it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jitgate.audit import backlog, checkpoint
from jitgate.audit.chain import read_head
from jitgate.audit.repair import repair
from jitgate.audit.verify import verify
from jitgate.clock import FrozenClock
from jitgate.errors import AuditIntegrityError, NotFound, StorageUnavailable
from jitgate.store.tables import audit_backlog, audit_events, audit_head
from jitgate.store.tables import grants as grant_rows
from jitgate.workflow import audit_state, credentials, grants
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.scheduler import expire_due, run_lifecycle, run_revocations, time_out_due
from support import ADMIN, ALICE, BOB, MALLORY
from support.providers import SwitchableProvider


@pytest.fixture
def fake(ctx: WorkflowContext) -> SwitchableProvider:
    provider = SwitchableProvider()
    ctx.providers["fake"] = provider
    return provider


def active(ctx: WorkflowContext, role: str = "vault-read", duration: str = "10m") -> dict[str, Any]:
    req = svc.submit(ctx, ALICE, role=role, duration=duration, reason="INC-1")
    assert req["state"] == "ACTIVE"
    return req["grant"]  # type: ignore[no-any-return]


def edit_head(ctx: WorkflowContext) -> dict[str, Any]:
    """What someone with write access to the database does: change the signed head. Returns it as it was."""
    with ctx.db.write() as conn:
        before = dict(conn.execute(sa.select(audit_head)).one()._mapping)
        conn.execute(audit_head.update().values(hash="0" * 64))
    return before


def put_back(ctx: WorkflowContext, head: dict[str, Any]) -> None:
    with ctx.db.write() as conn:
        conn.execute(audit_head.update().values(**head))


def chained(ctx: WorkflowContext) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar_one())


def chain_tail(ctx: WorkflowContext, n: int) -> list[str]:
    """The actions of the last ``n`` records of the chain, in chain order."""
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(audit_events.c.action).order_by(audit_events.c.seq.desc()).limit(n))
        return list(reversed(rows.scalars().all()))


def parked_actions(ctx: WorkflowContext) -> list[str]:
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(audit_backlog.c.event).order_by(audit_backlog.c.id)).scalars()
        return [event["action"] for event in rows]


def state_of(ctx: WorkflowContext, grant_id: str) -> str:
    with ctx.db.read() as conn:
        return str(
            conn.execute(sa.select(grant_rows.c.state).where(grant_rows.c.id == grant_id)).scalar_one()
        )


def test_revocation_expiry_and_the_revocation_queue_go_on_while_the_audit_head_is_edited(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider
) -> None:
    revoked, expiring = active(ctx), active(ctx)
    logins = {credentials.issue(ctx, ALICE, "vault-1")[1].handle for _ in range(2)}
    assert logins == fake.logins
    edit_head(ctx)
    before = chained(ctx)

    assert grants.revoke(ctx, ADMIN, revoked["id"], comment="INC-1 over")["state"] == "REVOKED"
    clock.advance(timedelta(minutes=10))
    assert expire_due(ctx) == 1
    assert state_of(ctx, expiring["id"]) == "EXPIRED"
    assert run_revocations(ctx) == (2, 0)

    assert fake.logins == set()
    assert chained(ctx) == before  # nothing was added to a chain that cannot be trusted
    assert parked_actions(ctx) == [
        "grant.revoked",
        "grant.expired",
        "credential.revoked",
        "credential.revoked",
    ]


def test_the_holder_revokes_their_own_grant_and_a_refusal_is_parked_too(
    ctx: WorkflowContext, fake: SwitchableProvider
) -> None:
    grant = active(ctx)
    edit_head(ctx)
    with pytest.raises(NotFound, match="no grant"):
        grants.revoke(ctx, MALLORY, grant["id"])
    assert grants.revoke(ctx, ALICE, grant["id"])["state"] == "REVOKED"
    assert parked_actions(ctx) == ["access.refused", "grant.revoked"]


def test_granting_fails_closed_while_the_audit_log_is_broken(
    ctx: WorkflowContext, fake: SwitchableProvider
) -> None:
    active(ctx)
    edit_head(ctx)
    with pytest.raises(AuditIntegrityError, match="not signed by this broker's audit key"):
        svc.submit(ctx, ALICE, role="vault-read", duration="5m", reason="INC-2")
    with pytest.raises(AuditIntegrityError):
        svc.submit(ctx, BOB, role="prod-shell", duration="1h", reason="INC-2")
    with pytest.raises(AuditIntegrityError):
        credentials.issue(ctx, ALICE, "vault-1")
    assert fake.logins == set()
    with ctx.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(grant_rows)).scalar_one() == 1
    assert parked_actions(ctx) == []


def test_a_login_created_as_the_audit_log_breaks_is_taken_back_not_handed_out(
    ctx: WorkflowContext, fake: SwitchableProvider
) -> None:
    active(ctx)
    real_issue = fake.issue

    def issue_then_break(request: Any, handle: str) -> Any:
        issued = real_issue(request, handle)
        edit_head(ctx)  # between creating the login and recording it
        return issued

    fake.issue = issue_then_break  # type: ignore[method-assign]
    with pytest.raises(AuditIntegrityError):
        credentials.issue(ctx, ALICE, "vault-1")
    assert len(fake.logins) == 1
    assert run_revocations(ctx) == (1, 0)
    assert fake.logins == set()
    assert parked_actions(ctx) == ["credential.failed", "credential.revoked"]


def test_a_scheduled_start_refused_does_not_hold_up_expiry_or_time_outs(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    ending = active(ctx, role="stage-shell")
    later = svc.submit(
        ctx, ALICE, role="stage-shell", duration="5m", start_at=clock.now() + timedelta(minutes=5)
    )
    waiting = svc.submit(ctx, ALICE, role="prod-shell", duration="1h", reason="INC-3")
    edit_head(ctx)
    clock.advance(timedelta(hours=3))
    run_lifecycle(ctx)
    assert state_of(ctx, ending["id"]) == "EXPIRED"
    assert state_of(ctx, later["grant"]["id"]) == "APPROVED"  # starting waits for the audit log
    assert svc.request_view_for(ctx, waiting["id"])["state"] == "TIMED_OUT"
    assert time_out_due(ctx) == 0
    assert parked_actions(ctx) == ["grant.expired", "request.timed_out"]


def test_each_expiry_still_runs_exactly_once_when_its_records_are_parked(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    for _ in range(30):
        active(ctx, role="stage-shell")
    edit_head(ctx)
    clock.advance(timedelta(hours=1))
    totals: list[int] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        totals.append(expire_due(ctx, limit=7) + expire_due(ctx, limit=7) + expire_due(ctx, limit=50))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(totals) == 30
    assert parked_actions(ctx) == ["grant.expired"] * 30


def test_a_deleted_head_or_a_record_slipped_in_past_it_parks_as_well(
    ctx: WorkflowContext, fake: SwitchableProvider
) -> None:
    first, second = active(ctx), active(ctx)
    with ctx.db.write() as conn:
        conn.execute(audit_head.delete())
    grants.revoke(ctx, ADMIN, first["id"])
    # Put a head back, then add a record after it that the audit key never covered: the append's
    # INSERT itself fails, which on PostgreSQL aborts the transaction but for a savepoint.
    with ctx.db.write() as conn:
        ctx.audit.reseal(
            conn,
            seq=chained(ctx),
            digest=conn.execute(
                sa.select(audit_events.c.hash).order_by(audit_events.c.seq.desc()).limit(1)
            ).scalar_one(),
        )
        last = dict(
            conn.execute(sa.select(audit_events).order_by(audit_events.c.seq.desc()).limit(1)).one()._mapping
        )
        conn.execute(audit_events.insert().values({**last, "seq": last["seq"] + 1}))
    assert grants.revoke(ctx, ADMIN, second["id"])["state"] == "REVOKED"
    assert parked_actions(ctx) == ["grant.revoked", "grant.revoked"]


def test_a_failing_database_is_not_taken_for_a_broken_audit_log(
    ctx: WorkflowContext, fake: SwitchableProvider
) -> None:
    grant = active(ctx)
    with ctx.db.write() as conn:
        conn.exec_driver_sql("ALTER TABLE audit_events RENAME TO audit_events_away")
    try:
        with pytest.raises((StorageUnavailable, sa.exc.DBAPIError)):
            grants.revoke(ctx, ADMIN, grant["id"])
    finally:
        with ctx.db.write() as conn:
            conn.exec_driver_sql("ALTER TABLE audit_events_away RENAME TO audit_events")
    assert state_of(ctx, grant["id"]) == "ACTIVE"  # rolled back whole, to be tried again
    assert parked_actions(ctx) == []
    assert grants.revoke(ctx, ADMIN, grant["id"])["state"] == "REVOKED"


def test_the_broken_log_is_reported_once_per_change_of_state(
    ctx: WorkflowContext, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        active(ctx, role="stage-shell")
    caplog.set_level(logging.WARNING, logger="jitgate.audit")
    head = edit_head(ctx)
    clock.advance(timedelta(hours=1))
    for _ in range(3):
        run_lifecycle(ctx)
    with pytest.raises(AuditIntegrityError):
        active(ctx, role="stage-shell")
    assert audit_state.status(ctx).problem is not None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "audit log broken" in errors[0].getMessage()

    put_back(ctx, head)
    run_lifecycle(ctx)
    run_lifecycle(ctx)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "audit log can be extended again; granting resumes",
        "appended 3 audit records parked while the audit log was broken",
    ]
    edit_head(ctx)
    assert audit_state.status(ctx).problem is not None
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_parked_records_join_the_chain_in_order_once_the_head_is_put_back(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider
) -> None:
    revoked, expiring = active(ctx), active(ctx)
    head = edit_head(ctx)
    grants.revoke(ctx, ADMIN, revoked["id"])
    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    assert audit_state.status(ctx) == audit_state.AuditStatus(audit_state.status(ctx).problem, 2)

    put_back(ctx, head)
    found = audit_state.watch(ctx)
    assert found.healthy
    assert audit_state.watch(ctx).healthy  # nothing appended twice
    assert parked_actions(ctx) == []
    assert chain_tail(ctx, 3) == ["audit.unparked", "grant.revoked", "grant.expired"]
    with ctx.db.read() as conn:
        assert verify(conn, ctx.audit.public_key).ok
        note = conn.execute(
            sa.select(audit_events.c.body).where(audit_events.c.action == "audit.unparked")
        ).scalar_one()
    assert '"records":2' in note
    assert "not signed by this broker's audit key" in note
    assert expiring["id"]
    active(ctx)  # granting works again


def test_repair_reseals_records_the_damage_and_appends_what_was_parked(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider
) -> None:
    grant = active(ctx)
    edit_head(ctx)
    grants.revoke(ctx, ADMIN, grant["id"])
    with ctx.db.read() as conn:
        assert not verify(conn, ctx.audit.public_key).ok

    with ctx.db.write() as conn:
        done = repair(
            conn, ctx.audit, checkpoint_path=None, now=clock.now(), actor="ops", reason="INC-9 head edited"
        )
    assert "not signed by this audit key" in done.problem
    assert done.unparked == 1
    with ctx.db.read() as conn:
        assert verify(conn, ctx.audit.public_key).ok
        assert backlog.count(conn) == 0
        record = conn.execute(
            sa.select(audit_events.c.body).where(audit_events.c.action == "audit.repaired")
        ).scalar_one()
        head = read_head(conn)
    assert '"hash":"' + "0" * 64 in record  # the damaged head, as it was found
    assert "INC-9 head edited" in record
    assert chain_tail(ctx, 3) == ["audit.repaired", "audit.unparked", "grant.revoked"]
    assert head is not None
    active(ctx)


def test_repair_refuses_to_paper_over_an_edited_record(ctx: WorkflowContext, clock: FrozenClock) -> None:
    active(ctx, role="stage-shell")
    with ctx.db.write() as conn:
        conn.execute(
            audit_events.update()
            .where(audit_events.c.seq == 1)
            .values(body=sa.func.replace(audit_events.c.body, "alice", "alicf"))
        )
        before = conn.execute(sa.select(audit_head)).one()
    with pytest.raises(AuditIntegrityError, match="record 1: hash does not match"), ctx.db.write() as conn:
        repair(conn, ctx.audit, checkpoint_path=None, now=clock.now(), actor="ops", reason="INC-9")
    with ctx.db.read() as conn:
        assert conn.execute(sa.select(audit_head)).one() == before


def test_a_scheduled_grant_can_still_be_cancelled(ctx: WorkflowContext, clock: FrozenClock) -> None:
    later = svc.submit(
        ctx, ALICE, role="stage-shell", duration="5m", start_at=clock.now() + timedelta(minutes=5)
    )
    edit_head(ctx)
    assert svc.cancel(ctx, ALICE, later["id"])["state"] == "CANCELLED"
    assert state_of(ctx, later["grant"]["id"]) == "CANCELLED"
    assert parked_actions(ctx) == ["request.cancelled"]


def test_brokers_racing_to_append_the_parked_records_append_them_once(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    for _ in range(5):
        active(ctx, role="stage-shell")
    head = edit_head(ctx)
    clock.advance(timedelta(hours=1))
    assert expire_due(ctx) == 5
    put_back(ctx, head)

    def broker() -> None:
        audit_state.watch(ctx)

    threads = [threading.Thread(target=broker) for _ in range(4)]
    with ctx.db.write() as holder:
        # On PostgreSQL, hold the head until every broker waits for it, so that they really race;
        # on SQLite this transaction holds the only write lock and they wait for that.
        holder.execute(sa.select(audit_head).with_for_update())
        for t in threads:
            t.start()
        if ctx.db.locks_rows:
            waiting = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + 30
            while holder.execute(waiting).scalar_one() < 4:
                holder.execute(
                    sa.text("SELECT pg_stat_clear_snapshot()")
                )  # else one snapshot per transaction
                assert time.monotonic() < deadline, "the brokers never queued for the audit head"
                time.sleep(0.01)
    for t in threads:
        t.join()
    with ctx.db.read() as conn:
        assert verify(conn, ctx.audit.public_key).ok
        expired = conn.execute(
            sa.select(sa.func.count()).where(audit_events.c.action == "grant.expired")
        ).scalar_one()
    assert expired == 5
    assert chain_tail(ctx, 6) == ["audit.unparked"] + ["grant.expired"] * 5


def test_a_head_the_broker_does_not_trust_is_never_copied_to_the_checkpoint(
    ctx: WorkflowContext, tmp_path: Path
) -> None:
    ctx.audit_checkpoint = checkpoint.Writer(tmp_path / "checkpoint.json", interval=0)
    active(ctx, role="stage-shell")
    run_lifecycle(ctx)
    saved = checkpoint.read(tmp_path / "checkpoint.json")
    assert saved is not None
    edit_head(ctx)
    run_lifecycle(ctx)
    assert checkpoint.read(tmp_path / "checkpoint.json") == saved


def test_a_parked_record_that_can_no_longer_be_read_is_recorded_as_lost(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    for _ in range(2):
        active(ctx, role="stage-shell")
    head = edit_head(ctx)
    clock.advance(timedelta(hours=1))
    assert expire_due(ctx) == 2
    with ctx.db.write() as conn:
        first = conn.execute(sa.select(sa.func.min(audit_backlog.c.id))).scalar_one()
        conn.execute(audit_backlog.update().where(audit_backlog.c.id == first).values(event={"action": "x"}))
    put_back(ctx, head)
    assert audit_state.watch(ctx).healthy
    with ctx.db.read() as conn:
        note = conn.execute(
            sa.select(audit_events.c.body).where(audit_events.c.action == "audit.unparked")
        ).scalar_one()
    assert '"records":1' in note
    assert f'"backlog_id":{first}' in note
    assert chain_tail(ctx, 2) == ["audit.unparked", "grant.expired"]
