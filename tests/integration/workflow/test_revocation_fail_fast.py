"""A target that cannot be reached costs a revocation batch one wait, not one per item: its other
items in the batch are recorded as failed at once (audited, backed off, still pending), and the
other targets of the batch are revoked as usual."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest

from jitgate.audit.chain import AuditLog
from jitgate.audit.query import query
from jitgate.clock import FrozenClock
from jitgate.errors import ProviderError, TargetUnreachable
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Target
from jitgate.store import issuance
from jitgate.store.db import Database
from jitgate.workflow import credentials
from jitgate.workflow import requests as svc
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import backoff, expire_due, run_revocations
from support import ALICE
from support.providers import SwitchableProvider

POLICY = """
targets:
  - name: db-a
    kind: fake
  - name: db-b
    kind: fake
roles:
  - name: a-read
    targets: {names: [db-a]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
  - name: b-read
    targets: {names: [db-b]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""
DOWN_FOR = 1.0


class PartlyDownProvider(SwitchableProvider):
    """Target ``down`` cannot be reached: each attempt waits a while, like a connect timeout, then
    fails with ``TargetUnreachable`` (or with ``error``, to show other failures are not skipped)."""

    def __init__(self, down: str) -> None:
        super().__init__()
        self.down: str | None = down
        self.wait = DOWN_FOR
        self.error: type[ProviderError] = TargetUnreachable
        self.attempts: Counter[str] = Counter()
        self.waiting = 0  # attempts on the down target now in progress
        self.revoked_meanwhile = 0  # revocations on other targets done while one was in progress
        self._count = threading.Lock()

    def revoke(self, target: Target, handle: str) -> None:
        with self._count:
            self.attempts[target.name] += 1
        if target.name == self.down:
            with self._count:
                self.waiting += 1
            time.sleep(self.wait)
            with self._count:
                self.waiting -= 1
            raise self.error(f"fake target {target.name}: cannot connect: connection timed out")
        super().revoke(target, handle)
        with self._count:
            if self.waiting:
                self.revoked_meanwhile += 1


@pytest.fixture
def ctx(db: Database, audit: AuditLog, clock: FrozenClock) -> WorkflowContext:
    policy = parse_policy(POLICY, "fail-fast.yaml")
    return WorkflowContext(db=db, policies=PolicyHolder(policy), audit=audit, clock=clock)


@pytest.fixture
def provider(ctx: WorkflowContext) -> PartlyDownProvider:
    fake = PartlyDownProvider(down="db-a")
    ctx.providers["fake"] = fake
    return fake


def issue_then_expire(
    ctx: WorkflowContext, clock: FrozenClock, counts: dict[str, int]
) -> dict[str, set[str]]:
    """Issue ``counts[target]`` credentials per target, let the grants end: their revocations are due."""
    handles: dict[str, set[str]] = {}
    for target, count in counts.items():
        request = svc.submit(ctx, ALICE, role=f"{target.removeprefix('db-')}-read", duration="10m")
        assert request["state"] == "ACTIVE"
        handles[target] = {credentials.issue(ctx, ALICE, target)[1].handle for _ in range(count)}
    clock.advance(timedelta(minutes=10))
    assert expire_due(ctx) == len(counts)
    return handles


def pending(ctx: WorkflowContext, target: str) -> list[dict[str, object]]:
    with ctx.db.read() as conn:
        return [dict(row) for row in issuance.pending_revocations(conn) if row["target"] == target]


def failures(ctx: WorkflowContext) -> list[dict[str, object]]:
    with ctx.db.read() as conn:
        events = query(conn, action="revocation.failed", limit=1000)
    return [{"target": e.target, **e.details} for e in events]


@pytest.mark.parametrize("workers", [4, 1])
def test_an_unreachable_target_is_tried_once_per_batch_and_holds_up_no_other(
    ctx: WorkflowContext, clock: FrozenClock, provider: PartlyDownProvider, workers: int
) -> None:
    handles = issue_then_expire(ctx, clock, {"db-a": 10, "db-b": 3})
    started = time.monotonic()
    outcome = run_revocations(ctx, workers=workers)
    took = time.monotonic() - started

    assert outcome == (3, 10)
    assert provider.attempts == {"db-a": 1, "db-b": 3}
    assert took < 5 * DOWN_FOR, f"the batch took {took:.1f}s"
    if workers > 1:
        assert provider.revoked_meanwhile == 3, "the other target waited for the unreachable one"
    assert not handles["db-b"] & provider.logins
    assert pending(ctx, "db-b") == []

    left = pending(ctx, "db-a")
    assert len(left) == 10
    assert {row["handle"] for row in left} == handles["db-a"]
    assert all(row["attempts"] == 1 for row in left)
    # The same backoff as any failed attempt, so nothing waits longer for having been skipped.
    assert {row["next_attempt_at"] for row in left} == {clock.now() + backoff(ctx, 1)}
    tried = "fake target db-a: cannot connect: connection timed out"
    skipped = f"not tried: target db-a unreachable a moment ago: {tried}"
    assert sorted(str(row["last_error"]) for row in left) == sorted([tried] + [skipped] * 9)

    audited = failures(ctx)
    assert len(audited) == 10
    assert {event["target"] for event in audited} == {"db-a"}
    assert {event["handle"] for event in audited} == handles["db-a"]
    assert Counter(event["error"] for event in audited) == {tried: 1, skipped: 9}
    assert all(event["attempt"] == 1 for event in audited)

    # Never dropped: the next batch tries the target again, once, and when it answers all go.
    clock.advance(backoff(ctx, 1))
    assert run_revocations(ctx, workers=workers) == (0, 10)
    assert provider.attempts["db-a"] == 2
    assert all(row["attempts"] == 2 for row in pending(ctx, "db-a"))
    provider.down = None
    clock.advance(backoff(ctx, 2))
    assert run_revocations(ctx, workers=workers) == (10, 0)
    assert provider.logins == set()
    assert pending(ctx, "db-a") == []


def test_other_failures_do_not_skip_the_rest_of_the_target(
    ctx: WorkflowContext, clock: FrozenClock, provider: PartlyDownProvider
) -> None:
    """Only an unreachable target is skipped: a revocation that fails on a target that answered
    says nothing about the target's other revocations, so each is tried."""
    provider.error = ProviderError
    provider.wait = 0.0
    issue_then_expire(ctx, clock, {"db-a": 5, "db-b": 2})
    assert run_revocations(ctx) == (2, 5)
    assert provider.attempts == {"db-a": 5, "db-b": 2}
    assert not any(str(row["last_error"]).startswith("not tried") for row in pending(ctx, "db-a"))
