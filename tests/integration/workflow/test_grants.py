"""Grants end by themselves exactly once, can be revoked and extended within the rules, and every
credential issued under them is taken back — retried until the target answers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jitgate.clock import FrozenClock
from jitgate.domain.model import Verdict
from jitgate.errors import InvalidTransition, NotFound, PolicyDenied
from jitgate.store import issuance
from jitgate.store.tables import audit_events, revocations
from jitgate.workflow import credentials, grants
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.grants import ISSUING_GRACE
from jitgate.workflow.scheduler import expire_due, run_revocations
from support import ADMIN, ALICE, BOB, CAROL, ERIN, MALLORY, audit_actions
from support.providers import SwitchableProvider


@pytest.fixture
def fake(ctx: WorkflowContext) -> SwitchableProvider:
    provider = SwitchableProvider()
    ctx.providers["fake"] = provider
    return provider


def active(
    ctx: WorkflowContext, role: str = "stage-shell", who: object = ALICE, duration: str = "10m"
) -> dict:
    req = svc.submit(ctx, who, role=role, duration=duration, reason="INC-1")  # type: ignore[arg-type]
    assert req["state"] == "ACTIVE"
    return req["grant"]  # type: ignore[no-any-return]


def test_grant_expires_at_its_end_and_not_before(ctx: WorkflowContext, clock: FrozenClock) -> None:
    grant = active(ctx)
    clock.advance(timedelta(minutes=10) - timedelta(microseconds=1))
    assert expire_due(ctx) == 0
    clock.advance(timedelta(microseconds=1))
    assert expire_due(ctx) == 1
    assert expire_due(ctx) == 0
    with ctx.db.read() as conn:
        from jitgate.workflow.views import grant_view

        ended = grant_view(conn, grant["id"], clock.now())
    assert ended["state"] == "EXPIRED"
    assert ended["seconds_left"] == 0
    assert audit_actions(ctx, action="grant.expired") == ["grant.expired"]


def test_each_expiry_runs_exactly_once_however_many_workers_race(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    for _ in range(30):
        active(ctx)
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
    with ctx.db.read() as conn:
        expired = conn.execute(
            sa.select(sa.func.count()).where(audit_events.c.action == "grant.expired")
        ).scalar_one()
    assert expired == 30


def test_revocation_by_holder_approver_or_admin_only(ctx: WorkflowContext) -> None:
    first = active(ctx, role="prod-shell", who=CAROL)
    # Whoever may not revoke it may not know it exists either: the answer for a missing id.
    with pytest.raises(NotFound, match=f"^no grant {first['id']}$"):
        grants.revoke(ctx, MALLORY, first["id"])
    with pytest.raises(NotFound, match=f"^no grant {first['id']}$"):
        grants.revoke(ctx, ALICE, first["id"])
    assert grants.revoke(ctx, ERIN, first["id"], comment="done")["state"] == "REVOKED"
    with pytest.raises(InvalidTransition, match="REVOKED; cannot revoke"):
        grants.revoke(ctx, ADMIN, first["id"])
    second = active(ctx, role="prod-shell", who=CAROL)
    assert grants.revoke(ctx, CAROL, second["id"])["state"] == "REVOKED"
    third = active(ctx, role="prod-shell", who=CAROL)
    assert grants.revoke(ctx, ADMIN, third["id"])["state"] == "REVOKED"
    with pytest.raises(NotFound):
        grants.revoke(ctx, ADMIN, "g-nope")


def test_extension_goes_through_approval_and_never_past_the_maximum(ctx: WorkflowContext) -> None:
    req = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-1", duration="3h")
    grant = svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)["grant"]
    with pytest.raises(PolicyDenied, match="would make it 4h30m long"):
        grants.extend(ctx, ALICE, grant["id"], duration="90m", reason="INC-1")
    with pytest.raises(PolicyDenied, match="only alice can extend"):
        grants.extend(ctx, BOB, grant["id"], duration="1h", reason="INC-1")
    ext = grants.extend(ctx, ALICE, grant["id"], duration="1h", reason="INC-1 still running")
    assert ext["state"] == "PENDING"
    assert ext["grant"]["expires_at"] == grant["expires_at"]
    with pytest.raises(PolicyDenied, match="cannot review their own"):
        svc.review(ctx, ALICE, ext["id"], verdict=Verdict.APPROVE)
    done = svc.review(ctx, BOB, ext["id"], verdict=Verdict.APPROVE)
    assert done["state"] == "APPROVED"
    assert done["grant"]["seconds_left"] == 4 * 3600


def test_auto_approved_role_extends_at_once(ctx: WorkflowContext) -> None:
    grant = active(ctx, duration="10m")
    ext = grants.extend(ctx, ALICE, grant["id"], duration="20m")
    assert ext["state"] == "APPROVED"
    assert ext["grant"]["seconds_left"] == 30 * 60
    with pytest.raises(PolicyDenied, match="allows at most 30m"):
        grants.extend(ctx, ALICE, grant["id"], duration="1s")


def test_no_credential_without_an_active_grant(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider
) -> None:
    with pytest.raises(PolicyDenied, match="alice holds no active grant for target vault-1"):
        credentials.issue(ctx, ALICE, "vault-1")
    grant = active(ctx, role="vault-read")
    with pytest.raises(PolicyDenied, match="bob holds no active grant"):
        credentials.issue(ctx, BOB, "vault-1")
    _, issued = credentials.issue(ctx, ALICE, "vault-1")
    assert issued.handle in fake.logins
    clock.advance(timedelta(minutes=10))
    with pytest.raises(PolicyDenied, match="no active grant"):
        credentials.issue(ctx, ALICE, "vault-1")
    assert grant["id"]
    assert audit_actions(ctx, action="access.refused") == ["access.refused"] * 3


def test_expiry_revokes_every_credential_and_retries_until_the_target_answers(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider
) -> None:
    grant = active(ctx, role="vault-read")
    handles = {credentials.issue(ctx, ALICE, "vault-1")[1].handle for _ in range(2)}
    assert handles <= fake.logins
    fake.up = False
    clock.advance(timedelta(minutes=10))
    assert expire_due(ctx) == 1
    assert run_revocations(ctx) == (0, 2)
    assert handles <= fake.logins
    with ctx.db.read() as conn:
        from jitgate.workflow.views import grant_view

        pending = grant_view(conn, grant["id"], clock.now())["pending_revocations"]
    assert len(pending) == 2
    assert [p["attempts"] for p in pending] == [1, 1]
    assert "unreachable" in pending[0]["last_error"]
    assert run_revocations(ctx) == (0, 0)  # backing off: not due yet
    clock.advance(timedelta(seconds=5))
    assert run_revocations(ctx) == (0, 2)
    fake.up = True
    clock.advance(timedelta(minutes=10))
    assert run_revocations(ctx) == (2, 0)
    assert not (handles & fake.logins)
    with ctx.db.read() as conn:
        left = conn.execute(sa.select(sa.func.count()).where(revocations.c.state == "pending")).scalar_one()
    assert left == 0
    actions = audit_actions(ctx)
    assert actions.count("revocation.failed") == 4
    assert actions.count("credential.revoked") == 2


def test_pending_revocations_survive_a_restart(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider, audit: object
) -> None:
    active(ctx, role="vault-read")
    handle = credentials.issue(ctx, ALICE, "vault-1")[1].handle
    fake.up = False
    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    run_revocations(ctx)
    # A new broker process: fresh context and provider objects over the same database.
    from jitgate.workflow.context import PolicyHolder

    restarted = WorkflowContext(
        db=ctx.db.__class__(ctx.db.url), policies=PolicyHolder(ctx.policy), audit=ctx.audit, clock=clock
    )
    restarted.providers["fake"] = fake
    fake.up = True
    clock.advance(timedelta(minutes=10))
    assert run_revocations(restarted) == (1, 0)
    assert handle not in fake.logins
    restarted.db.dispose()


def test_grants_that_expired_while_the_broker_was_down_end_on_start(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    from jitgate.workflow.scheduler import run_once

    for _ in range(3):
        active(ctx)
    clock.advance(timedelta(days=2))
    run_once(ctx)
    with ctx.db.read() as conn:
        from jitgate.domain.model import RequestState
        from jitgate.store import queries as q

        assert q.list_grants(conn, states=(RequestState.ACTIVE,)) == []
    lags = [e for e in audit_actions(ctx) if e == "grant.expired"]
    assert len(lags) == 3


def test_a_failed_issue_leaves_no_login_behind(ctx: WorkflowContext, fake: SwitchableProvider) -> None:
    from jitgate.errors import ProviderError

    active(ctx, role="vault-read")
    fake.up = False
    with pytest.raises(ProviderError, match="unreachable"):
        credentials.issue(ctx, ALICE, "vault-1")
    fake.up = True
    assert run_revocations(ctx) == (1, 0)
    assert fake.logins == set()
    assert "credential.failed" in audit_actions(ctx)


def test_a_grant_ends_even_while_a_failed_issue_is_still_being_cleaned_up(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider
) -> None:
    from jitgate.errors import ProviderError

    grant = active(ctx, role="vault-read")
    credentials.issue(ctx, ALICE, "vault-1")
    fake.up = False
    with pytest.raises(ProviderError):
        credentials.issue(ctx, ALICE, "vault-1")  # its clean-up is queued and cannot run yet
    clock.advance(timedelta(minutes=10))
    assert expire_due(ctx) == 1
    with ctx.db.read() as conn:
        pending = conn.execute(
            sa.select(sa.func.count()).where(
                revocations.c.grant_id == grant["id"], revocations.c.state == "pending"
            )
        ).scalar_one()
    assert pending == 2  # the issued login and the half-made one, each queued once
    fake.up = True
    clock.advance(timedelta(minutes=10))
    assert run_revocations(ctx) == (2, 0)
    assert fake.logins == set()


def test_a_login_created_after_its_grant_was_revoked_is_taken_back(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider
) -> None:
    from jitgate.errors import Conflict

    grant = active(ctx, role="vault-read")
    real_issue = fake.issue

    def slow_issue(request: object, handle: str) -> object:
        # While the target is still creating the login, the grant is revoked. Its revocation is
        # left to the issue for a while; this issue takes longer than that, so the revocation
        # runs and finds nothing to drop yet. Then the login appears.
        grants.revoke(ctx, ADMIN, grant["id"], comment="incident over")
        assert run_revocations(ctx) == (0, 0)
        clock.advance(ISSUING_GRACE)
        assert run_revocations(ctx) == (1, 0)
        return real_issue(request, handle)  # type: ignore[arg-type]

    fake.issue = slow_issue  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="ended while the credential was being issued"):
        credentials.issue(ctx, ALICE, "vault-1")
    assert len(fake.logins) == 1  # the late login exists...
    assert run_revocations(ctx) == (1, 0)
    assert fake.logins == set()  # ...and is taken back


def test_a_revocation_queued_again_while_it_runs_is_not_marked_done(
    ctx: WorkflowContext, clock: FrozenClock, fake: SwitchableProvider
) -> None:

    grant = active(ctx, role="vault-read")
    credentials.issue(ctx, ALICE, "vault-1")
    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    real_revoke = fake.revoke

    def revoke_then_requeue(target: object, handle: str) -> None:
        real_revoke(target, handle)  # type: ignore[arg-type]
        with ctx.transaction() as conn:  # meanwhile, a late issue asks for it to run again
            row = issuance.pending_revocations(conn, [grant["id"]])[0]
            issuance.enqueue_revocation(
                conn,
                credential_id=row["credential_id"],
                grant_id=grant["id"],
                target="vault-1",
                kind="fake",
                handle=handle,
                now=clock.now(),
            )

    fake.revoke = revoke_then_requeue  # type: ignore[method-assign]
    assert run_revocations(ctx) == (1, 0)
    with ctx.db.read() as conn:
        assert len(issuance.pending_revocations(conn, [grant["id"]])) == 1
    fake.revoke = real_revoke  # type: ignore[method-assign]
    assert run_revocations(ctx) == (1, 0)
    with ctx.db.read() as conn:
        assert issuance.pending_revocations(conn, [grant["id"]]) == []
