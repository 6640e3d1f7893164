"""One requester cannot bury everyone else's requests: at most ``max_pending_per_requester`` of
theirs wait for review at a time, also when they submit many at once (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from jitgate.errors import TooManyPending
from jitgate.store.tables import audit_events, requests
from jitgate.workflow import grants as grant_svc
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from support import ALICE, BOB, CAROL, audit_actions


def pending_of(ctx: WorkflowContext, who: str) -> int:
    with ctx.db.read() as conn:
        query = sa.select(sa.func.count()).where(requests.c.requester == who, requests.c.state == "PENDING")
        return int(conn.execute(query).scalar_one())


def test_the_request_past_the_cap_is_refused_audited_and_not_written(ctx: WorkflowContext) -> None:
    ctx.max_pending_per_requester = 3
    for n in range(3):
        svc.submit(ctx, ALICE, role="prod-shell", reason=f"INC-{n}")
    with pytest.raises(TooManyPending, match="alice already has 3 requests waiting for review"):
        svc.submit(ctx, ALICE, role="prod-shell", reason="INC-9")
    assert pending_of(ctx, "alice") == 3
    assert audit_actions(ctx)[-1] == "access.refused"
    with ctx.db.read() as conn:
        last = conn.execute(
            sa.select(audit_events.c.body).order_by(audit_events.c.seq.desc()).limit(1)
        ).scalar_one()
    assert '"error":"too_many_pending"' in last.replace(" ", "")
    # others are not held back by alice's queue
    assert svc.submit(ctx, BOB, role="prod-shell", reason="INC-10")["state"] == "PENDING"


def test_requests_that_never_wait_are_not_capped(ctx: WorkflowContext) -> None:
    ctx.max_pending_per_requester = 1
    svc.submit(ctx, CAROL, role="two-person", reason="x")
    assert svc.submit(ctx, CAROL, role="stage-shell", duration="5m")["state"] == "ACTIVE"
    assert svc.submit(ctx, CAROL, role="breakglass", reason="site down")["state"] == "ACTIVE"


def test_deciding_or_cancelling_makes_room_and_extensions_count(ctx: WorkflowContext) -> None:
    ctx.max_pending_per_requester = 1
    first = svc.submit(ctx, ALICE, role="two-person", reason="x")
    with pytest.raises(TooManyPending):
        svc.submit(ctx, ALICE, role="two-person", reason="y")
    svc.cancel(ctx, ALICE, first["id"])
    short = svc.submit(ctx, ALICE, role="quick-fix", duration="15m")  # auto-approved up to 15m
    assert short["state"] == "ACTIVE"
    waiting = grant_svc.extend(ctx, ALICE, short["grant"]["id"], duration="30m")  # needs review
    assert waiting["state"] == "PENDING"
    with pytest.raises(TooManyPending):
        svc.submit(ctx, ALICE, role="two-person", reason="z")
    with pytest.raises(TooManyPending):
        grant_svc.extend(ctx, ALICE, short["grant"]["id"], duration="20m")


def test_concurrent_submits_never_exceed_the_cap(ctx: WorkflowContext) -> None:
    ctx.max_pending_per_requester = 3
    attempts = 12
    barrier = threading.Barrier(attempts)
    outcomes: list[str] = []

    def submit(n: int) -> None:
        barrier.wait()
        try:
            svc.submit(ctx, ALICE, role="prod-shell", reason=f"INC-{n}")
            outcomes.append("made")
        except TooManyPending:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["made"] * 3 + ["refused"] * (attempts - 3)
    assert pending_of(ctx, "alice") == 3
