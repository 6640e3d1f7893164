"""Gateway sessions are opened only under a grant in force, are told to end the moment their grant
is revoked, expires or they are killed, end exactly once (even while the audit log is broken, or
when their gateway died), and are watched by one query however many there are."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant
from jitgate.errors import AuditIntegrityError, Conflict, InvalidInput, NotFound, PolicyDenied
from jitgate.store import queries as q
from jitgate.store.tables import audit_backlog, audit_events, audit_head, gateway_sessions
from jitgate.workflow import grants, sessions
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.scheduler import Every, run_lifecycle
from support import ADMIN, ALICE, BOB, CAROL, audit_actions

AUDITOR = Identity("audrey", frozenset({"auditors"}))


def granted(ctx: WorkflowContext, who: Identity = ALICE, duration: str = "10m") -> Grant:
    req = svc.submit(ctx, who, role="stage-shell", duration=duration, reason="INC-1")
    assert req["state"] == "ACTIVE"
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, req["grant"]["id"])
    assert grant is not None
    return grant


def opened(ctx: WorkflowContext, grant: Grant, who: Identity = ALICE, gateway: str = "gw-1") -> str:
    return sessions.open_session(
        ctx,
        who,
        grant=grant,
        target="stage-1",
        login="deploy",
        credential_serial="1234",
        source="10.0.0.7:51000",
        gateway=gateway,
    )


def ended_records(ctx: WorkflowContext) -> list[dict[str, Any]]:
    import json

    with ctx.db.read() as conn:
        bodies = conn.execute(
            sa.select(audit_events.c.body).where(audit_events.c.action == "session.ended")
        ).scalars()
        return [json.loads(b)["details"] for b in bodies]


@contextmanager
def counted_statements(ctx: WorkflowContext) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(ctx.db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(ctx.db.engine, "before_cursor_execute", before)


def test_a_session_opens_live_and_is_recorded_with_its_grant(ctx: WorkflowContext) -> None:
    grant = granted(ctx)
    session_id = opened(ctx, grant)
    assert session_id.startswith("s-")
    assert len(session_id) == 18
    row = sessions.get_session(ctx, ALICE, session_id)
    assert (row.state, row.holder, row.grant_id, row.bytes_in, row.recordings) == (
        "live",
        "alice",
        grant.id,
        0,
        (),
    )
    assert row.started_at == row.seen_at == ctx.clock.now()
    assert audit_actions(ctx, action="session.started") == ["session.started"]
    watched = sessions.watch(ctx, [session_id])
    assert watched == {session_id: sessions.SessionWatch(expires_at=grant.expires_at, close_reason=None)}


def test_revoking_the_grant_tells_the_watcher_to_end_the_session(ctx: WorkflowContext) -> None:
    grant = granted(ctx)
    session_id = opened(ctx, grant)
    grants.revoke(ctx, ALICE, grant.id, comment="done")
    assert sessions.watch(ctx, [session_id])[session_id].close_reason == f"grant {grant.id} was revoked"


def test_the_clock_alone_ends_a_session_before_the_scheduler_marks_the_grant(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    grant = granted(ctx)
    session_id = opened(ctx, grant)
    clock.advance(timedelta(minutes=10) - timedelta(microseconds=1))
    assert sessions.watch(ctx, [session_id])[session_id].close_reason is None
    clock.advance(timedelta(microseconds=1))
    assert sessions.watch(ctx, [session_id])[session_id].close_reason == f"grant {grant.id} expired"


def test_an_extension_moves_the_end_the_watcher_reports(ctx: WorkflowContext) -> None:
    grant = granted(ctx)
    session_id = opened(ctx, grant)
    grants.extend(ctx, ALICE, grant.id, duration="10m")
    watched = sessions.watch(ctx, [session_id])[session_id]
    assert watched.expires_at == grant.expires_at + timedelta(minutes=10)
    assert watched.close_reason is None


def test_no_session_opens_under_a_grant_no_longer_in_force(ctx: WorkflowContext, clock: FrozenClock) -> None:
    grant = granted(ctx)
    grants.revoke(ctx, ALICE, grant.id)
    with pytest.raises(Conflict, match=f"grant {grant.id} is not active"):
        opened(ctx, grant)  # the caller's copy of the grant still says ACTIVE
    expiring = granted(ctx)
    clock.advance(timedelta(minutes=10))
    with pytest.raises(Conflict):
        opened(ctx, expiring)
    with pytest.raises(NotFound):
        opened(ctx, granted(ctx), who=CAROL)  # not the holder's
    with ctx.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(gateway_sessions)).scalar_one() == 0
    assert audit_actions(ctx, action="session.started") == []


def test_the_watcher_reports_unknown_sessions_and_those_ended_elsewhere(ctx: WorkflowContext) -> None:
    session_id = opened(ctx, granted(ctx))
    sessions.close_session(ctx, session_id, reason="client left", bytes_in=1, bytes_out=2, recordings=[])
    watched = sessions.watch(ctx, [session_id, "s-0000000000000000"])
    assert watched["s-0000000000000000"].close_reason == "session not found"
    assert watched[session_id].close_reason == "session ended (client left)"
    assert sessions.watch(ctx, []) == {}


def test_admin_or_holder_may_kill_a_session_and_nobody_else_learns_it_exists(ctx: WorkflowContext) -> None:
    first = opened(ctx, granted(ctx))
    with pytest.raises(NotFound, match=f"^no session {first}$"):
        sessions.request_kill(ctx, BOB, first, reason="curious")
    with pytest.raises(PolicyDenied, match="only admins and alice"):
        sessions.request_kill(ctx, AUDITOR, first, reason="curious")
    with pytest.raises(InvalidInput):
        sessions.request_kill(ctx, ADMIN, first, reason="  ")
    killed = sessions.request_kill(ctx, ADMIN, first, reason="INC-9 contained")
    assert killed.kill_requested_by == "admin"
    assert killed.kill_requested_at == ctx.clock.now()
    assert sessions.watch(ctx, [first])[first].close_reason == "ended by admin (INC-9 contained)"
    with pytest.raises(Conflict, match="already being ended"):
        sessions.request_kill(ctx, ALICE, first, reason="again")

    second = opened(ctx, granted(ctx))
    sessions.request_kill(ctx, ALICE, second, reason="wrong host")
    assert sessions.watch(ctx, [second])[second].close_reason == "ended by alice (wrong host)"
    sessions.close_session(
        ctx, second, reason="ended by alice (wrong host)", bytes_in=0, bytes_out=0, recordings=[]
    )
    with pytest.raises(Conflict, match="already ended"):
        sessions.request_kill(ctx, ADMIN, second, reason="late")
    assert audit_actions(ctx, action="session.kill_requested") == ["session.kill_requested"] * 2
    assert audit_actions(ctx, action="access.refused").count("access.refused") == 5


def test_closing_twice_ends_once_with_one_record(ctx: WorkflowContext, clock: FrozenClock) -> None:
    session_id = opened(ctx, granted(ctx))
    clock.advance(timedelta(minutes=2))
    recordings = [
        {"channel": 0, "kind": "shell", "file": "x.cast", "sha256": "ab" * 32, "size": 10, "truncated": False}
    ]
    sessions.close_session(
        ctx, session_id, reason="x" * 300, bytes_in=10, bytes_out=20, recordings=recordings, exit_status=0
    )
    clock.advance(timedelta(seconds=5))
    sessions.close_session(ctx, session_id, reason="again", bytes_in=99, bytes_out=99, recordings=[])
    row = sessions.get_session(ctx, ALICE, session_id)
    assert (row.state, row.bytes_in, row.bytes_out) == ("ended", 10, 20)
    assert row.ended_at == clock.now() - timedelta(seconds=5)
    assert row.end_reason is not None
    assert len(row.end_reason) == 200
    assert row.recordings == tuple(recordings)
    [record] = ended_records(ctx)
    assert record["session"] == session_id
    assert (record["bytes_in"], record["bytes_out"], record["exit_status"]) == (10, 20, 0)
    assert record["recordings"] == recordings
    with pytest.raises(NotFound):
        sessions.close_session(ctx, "s-nope", reason="x", bytes_in=0, bytes_out=0, recordings=[])


def test_a_broken_audit_log_never_keeps_a_session_open_but_keeps_new_ones_from_opening(
    ctx: WorkflowContext,
) -> None:
    grant = granted(ctx)
    session_id = opened(ctx, grant)
    with ctx.db.write() as conn:
        conn.execute(audit_head.update().values(hash="0" * 64))
    sessions.close_session(ctx, session_id, reason="client left", bytes_in=1, bytes_out=1, recordings=[])
    assert sessions.get_session(ctx, ALICE, session_id).state == "ended"
    with ctx.db.read() as conn:
        parked = [e["action"] for e in conn.execute(sa.select(audit_backlog.c.event)).scalars()]
    assert parked == ["session.ended"]
    with pytest.raises(AuditIntegrityError, match="not signed"):
        opened(ctx, grant)
    with ctx.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(gateway_sessions)).scalar_one() == 1


def test_sessions_of_a_stopped_gateway_are_ended_once_by_whoever_notices(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    grant = granted(ctx)
    lost, kept, other = opened(ctx, grant), opened(ctx, grant), opened(ctx, grant, gateway="gw-2")
    clock.advance(timedelta(seconds=20))
    sessions.heartbeat(ctx, "gw-1", [kept, other])  # ``other`` belongs to gw-2: not touched
    clock.advance(timedelta(seconds=11))
    assert sessions.reap_lost(ctx, stale_after=timedelta(seconds=30)) == 2
    assert sessions.reap_lost(ctx, stale_after=timedelta(seconds=30)) == 0
    states = {s: sessions.get_session(ctx, ADMIN, s) for s in (lost, kept, other)}
    assert {s: r.state for s, r in states.items()} == {lost: "ended", kept: "live", other: "ended"}
    assert states[lost].end_reason == "gateway stopped"
    records = ended_records(ctx)
    assert sorted(r["session"] for r in records) == sorted([lost, other])
    assert all(r["reason"] == "gateway stopped" and r["recordings"] == [] for r in records)


def test_reapers_racing_in_several_threads_end_each_lost_session_once(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    grant = granted(ctx, duration="30m")
    for _ in range(30):
        opened(ctx, grant)
    clock.advance(timedelta(minutes=1))
    totals: list[int] = []
    barrier = threading.Barrier(4)

    def reaper() -> None:
        barrier.wait()
        totals.append(sum(sessions.reap_lost(ctx, stale_after=timedelta(seconds=30)) for _ in range(3)))

    threads = [threading.Thread(target=reaper) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(totals) == 30
    assert len(ended_records(ctx)) == 30


def test_the_lifecycle_loop_reaps_lost_sessions_every_few_seconds(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    session_id = opened(ctx, granted(ctx, duration="30m"))
    every = Every(timedelta(seconds=5))
    run_lifecycle(ctx, reap=every)  # reaps now (nothing stale), and not again for 5 s
    clock.advance(timedelta(seconds=31))
    every.last = clock.now() - timedelta(seconds=1)
    run_lifecycle(ctx, reap=every)
    assert sessions.get_session(ctx, ALICE, session_id).state == "live"
    clock.advance(timedelta(seconds=4))
    run_lifecycle(ctx, reap=every)
    assert sessions.get_session(ctx, ALICE, session_id).state == "ended"


def test_watching_two_hundred_sessions_is_one_query(ctx: WorkflowContext) -> None:
    grant = granted(ctx, duration="30m")
    ids = [opened(ctx, grant) for _ in range(200)]
    with counted_statements(ctx) as seen:
        watched = sessions.watch(ctx, ids)
    queries = [s for s in seen if s.split(None, 1)[0].upper() not in {"BEGIN", "COMMIT", "ROLLBACK"}]
    assert len(queries) == 1
    assert "gateway_sessions" in queries[0]
    assert "JOIN grants" in queries[0]
    assert len(watched) == 200
    assert all(w.close_reason is None for w in watched.values())
    with counted_statements(ctx) as seen:
        sessions.heartbeat(ctx, "gw-1", ids)
    assert [s.split(None, 1)[0].upper() for s in seen if "gateway_sessions" in s] == ["UPDATE"]


def test_holders_see_their_own_and_admins_and_auditors_everyones(ctx: WorkflowContext) -> None:
    mine = opened(ctx, granted(ctx))
    theirs = opened(ctx, granted(ctx, who=CAROL), who=CAROL)
    assert [s.id for s in sessions.session_page(ctx, ALICE).items] == [mine]
    with pytest.raises(PolicyDenied):
        sessions.session_page(ctx, ALICE, user="carol")
    with pytest.raises(NotFound):
        sessions.get_session(ctx, ALICE, theirs)
    for reader in (ADMIN, AUDITOR):
        assert {s.id for s in sessions.session_page(ctx, reader, user="*").items} == {mine, theirs}
        assert [s.id for s in sessions.session_page(ctx, reader, user="carol").items] == [theirs]
        assert sessions.get_session(ctx, reader, theirs).holder == "carol"
    sessions.close_session(ctx, mine, reason="done", bytes_in=0, bytes_out=0, recordings=[])
    assert [s.id for s in sessions.session_page(ctx, ADMIN, user="*", active=True).items] == [theirs]


def test_a_recording_file_must_lie_under_the_recordings_directory(
    ctx: WorkflowContext, tmp_path: Path
) -> None:
    session_id = opened(ctx, granted(ctx))
    recordings = [
        {"channel": 0, "kind": "exec", "file": f"{session_id}/0.ndjson"},
        {"channel": 1, "kind": "shell", "file": f"{session_id}/1.cast"},
        {"channel": 2, "kind": "sftp", "file": "../../etc/passwd"},
        {"channel": 3, "kind": "sftp", "file": "/etc/passwd"},
    ]
    sessions.close_session(ctx, session_id, reason="done", bytes_in=0, bytes_out=0, recordings=recordings)
    row = sessions.get_session(ctx, ALICE, session_id)
    root = tmp_path / "recordings"
    assert sessions.recording_path(root, row, None) == (root / session_id / "1.cast").resolve()
    assert sessions.recording_path(root, row, 0) == (root / session_id / "0.ndjson").resolve()
    for channel in (2, 3):
        with pytest.raises(InvalidInput, match="outside the recordings directory"):
            sessions.recording_path(root, row, channel)
    with pytest.raises(NotFound, match="no recording of channel 9"):
        sessions.recording_path(root, row, 9)
