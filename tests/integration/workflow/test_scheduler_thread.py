"""The real scheduler threads with the system clock: grants end on time by themselves, and a target
that hangs during revocation does not hold up the expiry of other grants."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from jitgate.audit.chain import AuditLog
from jitgate.clock import SystemClock
from jitgate.policy.model import Policy, Target
from jitgate.store.db import Database
from jitgate.workflow import credentials
from jitgate.workflow import requests as svc
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import Scheduler
from jitgate.workflow.views import request_view
from support import ALICE
from support.providers import SwitchableProvider


class HangingProvider(SwitchableProvider):
    """A target whose revocation hangs until released, like a database that stopped answering."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.hanging = threading.Event()

    def revoke(self, target: Target, handle: str) -> None:
        self.hanging.set()
        self.release.wait(timeout=30)
        super().revoke(target, handle)


def state_of(ctx: WorkflowContext, request_id: str) -> str:
    with ctx.db.read() as conn:
        return str(request_view(conn, request_id, ctx.clock.now())["state"])


def wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_hanging_revocation_does_not_delay_other_expiries(
    db: Database, policy: Policy, audit: AuditLog
) -> None:
    ctx = WorkflowContext(db=db, policies=PolicyHolder(policy), audit=audit, clock=SystemClock())
    provider = HangingProvider()
    ctx.providers["fake"] = provider
    scheduler = Scheduler(ctx, poll_seconds=0.5)
    ctx.wake_scheduler = scheduler.wake
    first = svc.submit(ctx, ALICE, role="vault-read", duration="1m")
    credentials.issue(ctx, ALICE, "vault-1")
    # Shorten the first grant so it ends now, and let a second one end a moment later.
    from jitgate.store import queries as q

    with db.write() as conn:
        q.set_grant_expiry(conn, first["grant"]["id"], datetime.now(UTC) + timedelta(seconds=1))
    second = svc.submit(ctx, ALICE, role="stage-shell", duration="1m")
    with db.write() as conn:
        q.set_grant_expiry(conn, second["grant"]["id"], datetime.now(UTC) + timedelta(seconds=2))
    scheduler.start()
    try:
        assert wait_for(lambda: state_of(ctx, first["id"]) == "EXPIRED", 5)
        assert provider.hanging.wait(5)  # the revocation of its credential is now stuck
        ended_second = wait_for(lambda: state_of(ctx, second["id"]) == "EXPIRED", 4)
        assert ended_second, "expiry waited for a hanging revocation"
        with db.read() as conn:
            grant = q.get_grant(conn, second["grant"]["id"])
        assert grant is not None
        assert grant.ended_at is not None
        assert (grant.ended_at - grant.expires_at) < timedelta(seconds=1)
    finally:
        provider.release.set()
    assert wait_for(lambda: not provider.logins, 5)
    scheduler.stop()
