"""Requests and reviews on a real database (SQLite and PostgreSQL): the rules hold and the store
stays consistent when they refuse."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jitgate.clock import FrozenClock
from jitgate.domain.model import Verdict
from jitgate.errors import Conflict, InvalidInput, InvalidTransition, NotFound, PolicyDenied
from jitgate.store.tables import grants, requests, reviews
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from support import ADMIN, ALICE, BOB, CAROL, ERIN, MALLORY, audit_actions


def count(ctx: WorkflowContext, table: sa.Table) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_request_waits_for_an_approver_then_starts_its_window_at_approval(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    req = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-1 disk full", duration="30m")
    assert req["state"] == "PENDING"
    assert req["grant"] is None
    clock.advance(timedelta(minutes=45))  # reviewers took their time
    approved = svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE, comment="go")
    assert approved["state"] == "ACTIVE"
    grant = approved["grant"]
    assert grant["starts_at"] == clock.now().isoformat().replace("+00:00", "Z")
    assert grant["seconds_left"] == 30 * 60
    assert audit_actions(ctx) == ["request.created", "review.approved", "grant.activated"]


def test_requester_cannot_approve_their_own_request(ctx: WorkflowContext) -> None:
    req = svc.submit(ctx, BOB, role="prod-shell", reason="INC-2")
    with pytest.raises(PolicyDenied, match="bob cannot review their own request"):
        svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)
    assert count(ctx, reviews) == 0
    assert count(ctx, grants) == 0
    assert "access.refused" in audit_actions(ctx)


def test_non_approver_cannot_approve_and_is_told_the_request_does_not_exist(ctx: WorkflowContext) -> None:
    req = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-3")
    with pytest.raises(NotFound, match=f"^no request {req['id']}$"):
        svc.review(ctx, CAROL, req["id"], verdict=Verdict.APPROVE)
    assert count(ctx, grants) == 0


def test_two_person_rule(ctx: WorkflowContext) -> None:
    req = svc.submit(ctx, ALICE, role="two-person", reason="migration")
    first = svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)
    assert first["state"] == "PENDING"
    with pytest.raises(Conflict, match="bob has already reviewed"):
        svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)
    second = svc.review(ctx, ERIN, req["id"], verdict=Verdict.APPROVE)
    assert second["state"] == "ACTIVE"
    with pytest.raises(InvalidTransition, match="can no longer be reviewed"):
        svc.review(ctx, ADMIN, req["id"], verdict=Verdict.APPROVE)


def test_deny_wins(ctx: WorkflowContext) -> None:
    req = svc.submit(ctx, ALICE, role="two-person", reason="x")
    svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)
    denied = svc.review(ctx, ERIN, req["id"], verdict=Verdict.DENY, comment="not during the freeze")
    assert denied["state"] == "DENIED"
    assert denied["grant"] is None


def test_auto_approval_for_oncall_and_for_short_requests(ctx: WorkflowContext) -> None:
    oncall = svc.submit(ctx, CAROL, role="prod-shell", reason="INC-9")
    assert oncall["state"] == "ACTIVE"
    assert oncall["auto_approved"] == "auto_approve[0]"
    short = svc.submit(ctx, ALICE, role="quick-fix", duration="15m")
    assert short["state"] == "ACTIVE"
    longer = svc.submit(ctx, ALICE, role="quick-fix", duration="16m")
    assert longer["state"] == "PENDING"


def test_break_glass_activates_at_once_flagged_and_tells_approvers(ctx: WorkflowContext) -> None:
    sent: list[tuple[str, dict[str, object]]] = []

    class Recorder:
        def send(self, event: str, payload: dict[str, object]) -> None:
            sent.append((event, payload))

    ctx.notifier = Recorder()
    req = svc.submit(ctx, CAROL, role="breakglass", reason="site down")
    assert req["state"] == "ACTIVE"
    assert req["break_glass"] is True
    assert req["grant"]["break_glass"] is True
    assert sent[0][0] == "break_glass"
    assert sent[0][1]["approvers"] == ["group:sre-leads"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"role": "nope"}, NotFound, "no role named 'nope'"),
        ({"role": "prod-shell", "reason": "INC-1", "targets": ("moon",)}, NotFound, "no target named 'moon'"),
        ({"role": "prod-shell", "reason": "INC-1", "targets": ("stage-1",)}, PolicyDenied, "does not reach"),
        (
            {"role": "prod-shell", "reason": "INC-1", "duration": "0s"},
            InvalidInput,
            "not a positive duration",
        ),
        ({"role": "prod-shell", "reason": "INC-1", "duration": "-5m"}, InvalidInput, "not a duration"),
        ({"role": "prod-shell", "reason": "INC-1", "duration": "5h"}, PolicyDenied, "maximum of 4h"),
        ({"role": "prod-shell", "reason": "no ticket"}, InvalidInput, "must match"),
        ({"role": "prod-shell", "reason": "INC-1", "requester": "bob"}, PolicyDenied, "on behalf of bob"),
    ],
)
def test_bad_requests_are_refused_and_leave_nothing_behind(
    ctx: WorkflowContext, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        svc.submit(ctx, ALICE, **kwargs)  # type: ignore[arg-type]
    assert count(ctx, requests) == 0
    assert audit_actions(ctx) == ["access.refused"]


def test_someone_outside_the_requesters_is_refused(ctx: WorkflowContext) -> None:
    with pytest.raises(PolicyDenied, match="mallory may not request role prod-shell"):
        svc.submit(ctx, MALLORY, role="prod-shell", reason="INC-1")


def test_nobody_reviews_in_time(ctx: WorkflowContext, clock: FrozenClock) -> None:
    from jitgate.workflow.scheduler import time_out_due

    req = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-4")
    clock.advance(timedelta(hours=1, minutes=59))
    assert time_out_due(ctx) == 0
    clock.advance(timedelta(minutes=1))
    assert time_out_due(ctx) == 1
    with pytest.raises(InvalidTransition, match="TIMED_OUT"):
        svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)


def test_cancel_only_by_the_requester_and_only_before_it_starts(ctx: WorkflowContext) -> None:
    req = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-5")
    with pytest.raises(PolicyDenied, match="only alice can cancel"):
        svc.cancel(ctx, BOB, req["id"])
    assert svc.cancel(ctx, ALICE, req["id"])["state"] == "CANCELLED"
    with pytest.raises(InvalidTransition, match="CANCELLED"):
        svc.cancel(ctx, ALICE, req["id"])


def test_scheduled_start_keeps_the_whole_window(ctx: WorkflowContext, clock: FrozenClock) -> None:
    from jitgate.workflow.scheduler import start_due

    start = clock.now() + timedelta(days=1)
    req = svc.submit(ctx, ALICE, role="prod-shell", reason="CHG-7", duration="2h", start_at=start)
    approved = svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)
    assert approved["state"] == "APPROVED"
    assert approved["grant"]["state"] == "APPROVED"
    clock.set(start)
    assert start_due(ctx) == 1
    active = svc.request_view_for(ctx, req["id"])
    assert active["state"] == "ACTIVE"
    assert active["grant"]["seconds_left"] == 2 * 3600


def test_start_in_the_past_is_refused(ctx: WorkflowContext, clock: FrozenClock) -> None:
    with pytest.raises(InvalidInput, match="in the past"):
        svc.submit(ctx, ALICE, role="prod-shell", reason="CHG-7", start_at=clock.now() - timedelta(hours=1))


def test_concurrent_approve_and_deny_end_in_exactly_one_decision(ctx: WorkflowContext) -> None:
    req = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-6")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def act(who: object, verdict: Verdict) -> None:
        barrier.wait()
        try:
            outcomes.append(svc.review(ctx, who, req["id"], verdict=verdict, comment="c")["state"])  # type: ignore[arg-type]
        except (Conflict, InvalidTransition) as exc:
            outcomes.append(type(exc).__name__)

    threads = [
        threading.Thread(target=act, args=(BOB, Verdict.APPROVE)),
        threading.Thread(target=act, args=(ERIN, Verdict.DENY)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = svc.request_view_for(ctx, req["id"])
    assert final["state"] in {"ACTIVE", "DENIED"}
    assert sorted(outcomes) == sorted([final["state"], "InvalidTransition"])
    assert count(ctx, grants) == (1 if final["state"] == "ACTIVE" else 0)
    assert count(ctx, reviews) == 1
