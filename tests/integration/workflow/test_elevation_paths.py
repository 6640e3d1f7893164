"""Elevation along every path a grant takes: each way it becomes active (auto, review, break-glass,
a scheduled start) and ends (expiry, revocation, a disabled user), the policy edited under live
grants, what may and may not pass for held before, the queue's turns per account, and the checks
made when a request is submitted. Workflow level, with the fake directory, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitgate.audit.chain import AuditLog
from jitgate.audit.query import query
from jitgate.clock import FrozenClock
from jitgate.domain.model import Verdict
from jitgate.errors import PolicyDenied
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.store.db import Database
from jitgate.workflow import grants, users
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.scheduler import expire_due, run_lifecycle, run_revocations
from support import ADMIN, ALICE, BOB, CAROL
from support.elevation_world import (
    OC,
    POLICY,
    G,
    HookedTarget,
    audited,
    context,
    drain,
    end_now,
    grant_of,
    reload,
    rows_of,
)


@pytest.fixture
def target() -> HookedTarget:
    return HookedTarget({"alice": set(), "bob": set(), "robert": set(), "carol": set()})


@pytest.fixture
def ctx(db: Database, audit: AuditLog, clock: FrozenClock, target: HookedTarget) -> WorkflowContext:
    return context(db, audit, clock, target)


# --- prior: what the account held before ---------------------------------------------------------


def test_a_pending_failed_withdrawal_is_not_taken_for_prior_by_the_next_grant(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    first = grant_of(ctx, "small")
    drain(ctx, clock)
    end_now(ctx, first)
    target.up = False
    assert run_revocations(ctx) == (0, 1)
    target.up = True
    second = grant_of(ctx, "small")
    assert run_revocations(ctx) == (1, 0)  # the second's elevation runs before the first's retry
    assert {row["prior"] for row in rows_of(ctx, second)} == {False}
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}
    end_now(ctx, second)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_removing_and_adding_the_item_again_during_the_grant_does_not_make_it_prior(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "small")
    drain(ctx, clock)
    target.accounts["alice"].discard(G)
    target.accounts["alice"].add(G)
    end_now(ctx, grant_id)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


# --- the policy changes while grants are live ----------------------------------------------------


def test_an_edited_role_takes_back_what_it_gave_before_the_edit(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "big")
    drain(ctx, clock)
    reload(ctx, POLICY.replace(f'groups: ["{G}", "{OC}"]', f'groups: ["{G}"]'))
    end_now(ctx, grant_id)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_a_role_removed_from_the_policy_still_ends_and_is_taken_back(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_of(ctx, "mapped", who=BOB, minutes=10)
    drain(ctx, clock)
    reload(ctx, POLICY.split("  - name: mapped")[0])
    clock.advance(timedelta(minutes=10))
    assert expire_due(ctx) == 1
    drain(ctx, clock)
    assert target.accounts["robert"] == set()


def test_a_changed_account_map_takes_back_from_the_account_that_was_elevated(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    target.accounts["bobby"] = set()
    grant_id = grant_of(ctx, "mapped", who=BOB)
    drain(ctx, clock)
    reload(ctx, POLICY.replace("{bob: robert}", "{bob: bobby}"))
    end_now(ctx, grant_id)
    drain(ctx, clock)
    assert target.accounts["robert"] == set()
    assert target.calls[-1] == ("withdraw", "uid=robert", (OC,))


def test_a_target_removed_from_the_policy_keeps_its_withdrawal_pending_until_it_returns(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "small")
    drain(ctx, clock)
    reload(ctx, POLICY.replace("corp", "corp-new"))
    end_now(ctx, grant_id)
    assert run_revocations(ctx) == (0, 1)
    with ctx.db.read() as conn:
        (pending,) = issuance.pending_revocations(conn)
    assert "no longer in the policy" in pending["last_error"]
    reload(ctx, POLICY)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_a_scheduled_grant_whose_account_the_policy_no_longer_maps_is_revoked_not_stuck(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """Its start must neither fail every pass nor hold up the other grants due to start."""
    start = clock.now() + timedelta(hours=1)
    robert = svc.submit(ctx, BOB, role="mapped", reason="CHG-1", duration="30m", start_at=start)
    carol = svc.submit(ctx, CAROL, role="small", reason="CHG-1", duration="30m", start_at=start)
    reload(ctx, POLICY.replace("{bob: robert}", "{someone: robert}"))
    clock.advance(timedelta(hours=1))
    run_lifecycle(ctx)
    with ctx.db.read() as conn:
        bob_grant = q.get_grant(conn, robert["grant"]["id"])
        carol_grant = q.get_grant(conn, carol["grant"]["id"])
    assert bob_grant is not None
    assert bob_grant.state.value == "REVOKED"
    assert carol_grant is not None
    assert carol_grant.state.value == "ACTIVE"
    drain(ctx, clock)
    assert target.accounts["carol"] == {G}
    assert target.accounts["robert"] == set()


# --- every way a grant becomes active, and ends ---------------------------------------------------


def test_a_scheduled_grant_is_elevated_when_it_starts_and_not_before(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    start = clock.now() + timedelta(hours=1)
    view = svc.submit(ctx, ALICE, role="small", reason="CHG-1", duration="30m", start_at=start)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()
    clock.advance(timedelta(hours=1))
    run_lifecycle(ctx)
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}
    clock.advance(timedelta(minutes=30))
    run_lifecycle(ctx)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()
    assert view["grant"]["state"] == "APPROVED"


def test_a_grant_approved_by_review_is_elevated(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    req = svc.submit(ctx, ALICE, role="reviewed", reason="CHG-1", duration="30m")
    drain(ctx, clock)
    assert target.accounts["alice"] == set()
    view = svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)
    assert view["state"] == "ACTIVE"
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}


def test_break_glass_is_elevated_at_once(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_of(ctx, "glass", who=CAROL)
    drain(ctx, clock)
    assert target.accounts["carol"] == {G}


def test_an_extended_grant_keeps_its_elevation_until_its_new_end(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "small", minutes=10)
    drain(ctx, clock)
    grants.extend(ctx, ALICE, grant_id, duration="30m")  # auto-approved like the grant
    clock.advance(timedelta(minutes=11))
    assert expire_due(ctx) == 0
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}
    clock.advance(timedelta(minutes=30))
    assert expire_due(ctx) == 1
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_disabling_a_user_takes_back_their_elevations(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    users.add_user(ctx.db, ctx.audit, clock, actor="admin", name="alice", groups=["engineers"])
    grant_of(ctx, "big")
    drain(ctx, clock)
    users.set_disabled(ctx, ADMIN, "alice", disabled=True)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_an_elevation_is_taken_back_even_from_a_provider_whose_credentials_die_by_themselves(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    target.revocable = False  # its certificates need no revocation; its elevations do
    grant_id = grant_of(ctx, "small")
    drain(ctx, clock)
    end_now(ctx, grant_id)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


# --- the queue's per-account turns ---------------------------------------------------------------


def test_many_items_on_one_account_do_not_starve_another_account(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    for _ in range(12):
        grant_of(ctx, "small")
    grant_of(ctx, "mapped", who=BOB)
    passes = 0
    while not target.accounts["robert"]:
        run_revocations(ctx, limit=5)  # the clock does not move: alice's held-back items wait
        passes += 1
        assert passes <= 4
    with ctx.db.read() as conn:
        after = issuance.next_revocation_attempt(conn)
    assert after is not None
    assert after > clock.now()  # nothing is due at once: the loop sleeps, it does not spin


def test_a_request_is_not_refused_while_the_target_cannot_be_asked(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    target.up = False
    grant_of(ctx, "small")
    assert run_revocations(ctx) == (0, 1)
    (failed,) = audited(ctx, "elevation.failed")
    assert "connection refused" in failed["details"]["error"]
    target.up = True
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}


def test_a_request_refused_for_a_missing_account_is_audited(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    del target.accounts["alice"]
    with pytest.raises(PolicyDenied, match="does not exist"):
        svc.submit(ctx, ALICE, role="small", reason="incident 7", duration="30m")
    with ctx.db.read() as conn:
        (refused,) = query(conn, action="access.refused", limit=10)
    assert refused.details["attempted"] == "request.create"
    assert "account alice does not exist on target corp" in str(refused.details["reason"])
