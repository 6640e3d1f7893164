"""Attacks on the broker's counting of elevations: every way we found to make it take an item back
early for a grant that still holds it, or leave one in place after every grant that gave it ended.

Interleavings are forced, not hoped for: the fake target runs a hook in the middle of a call (the
grant revoked, the clock moved past the claim, another broker replica's pass), so each attack
replays the same way on SQLite and on PostgreSQL. The invariant checked at the end of each is the
one that matters: the account holds exactly what a live grant gave it and what it held before.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jitgate.audit.chain import AuditLog
from jitgate.clock import FrozenClock
from jitgate.errors import ElevationRefused, TargetUnreachable
from jitgate.store import elevations, issuance
from jitgate.store import queries as q
from jitgate.store.db import Database
from jitgate.store.tables import audit_head
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.scheduler import run_revocations
from support.elevation_world import (
    OC,
    G,
    HookedTarget,
    audited,
    context,
    drain,
    end_now,
    grant_of,
    lapse_claims,
    nothing_pending,
    rows_of,
)


@pytest.fixture
def target() -> HookedTarget:
    return HookedTarget({"alice": set(), "bob": set(), "robert": set(), "carol": set()})


@pytest.fixture
def ctx(db: Database, audit: AuditLog, clock: FrozenClock, target: HookedTarget) -> WorkflowContext:
    return context(db, audit, clock, target)


# --- grants that overlap -------------------------------------------------------------------------


def test_two_roles_with_different_items_on_one_account_take_back_only_their_own(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    small = grant_of(ctx, "small", minutes=60)
    big = grant_of(ctx, "big", minutes=10)
    drain(ctx, clock)
    assert target.accounts["alice"] == {G, OC}
    end_now(ctx, big)
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}  # the small grant still holds G
    end_now(ctx, small)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_a_grant_revoked_while_its_elevation_is_applied_ends_with_nothing_left(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "big")
    meanwhile: list[tuple[int, int]] = []

    def revoke_mid_call() -> None:
        end_now(ctx, grant_id)
        meanwhile.append(run_revocations(ctx))

    target.before["elevate"].append(revoke_mid_call)
    drain(ctx, clock)
    assert meanwhile == [(0, 0)]  # the withdrawal waited for the claim on the account
    assert target.accounts["alice"] == set()
    assert target.calls[-1] == ("withdraw", "uid=alice", (G, OC))
    assert nothing_pending(ctx)


# --- crashes between the steps -------------------------------------------------------------------


def crash() -> None:
    raise RuntimeError("the broker fell over here")


def test_a_crash_after_recording_prior_and_before_the_grant_is_retried_and_ends_clean(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "big")
    target.before["elevate"].append(crash)
    assert run_revocations(ctx) == (0, 1)
    assert {row["state"] for row in rows_of(ctx, grant_id)} == {elevations.APPLYING}
    end_now(ctx, grant_id)  # before the retry: the items it may hold are taken back all the same
    drain(ctx, clock)
    assert target.accounts["alice"] == set()
    assert nothing_pending(ctx)


def test_a_crash_after_the_grant_and_before_recording_it_never_becomes_prior(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """The retry finds the items held (by the attempt that crashed): they are the grant's, not the
    account's, and the audit record says the broker granted them."""
    grant_id = grant_of(ctx, "big")
    target.after["elevate"].append(crash)
    assert run_revocations(ctx) == (0, 1)
    assert target.accounts["alice"] == {G, OC}
    drain(ctx, clock)
    assert {row["prior"] for row in rows_of(ctx, grant_id)} == {False}
    (issued,) = audited(ctx, "credential.issued")
    assert sorted(issued["details"]["elevation"]["granted"]) == sorted([G, OC])
    end_now(ctx, grant_id)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_a_crash_after_the_withdrawal_and_before_recording_it_keeps_a_new_grant_whole(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    first = grant_of(ctx, "small")
    drain(ctx, clock)
    end_now(ctx, first)
    target.after["withdraw"].append(crash)
    assert run_revocations(ctx) == (0, 1)  # G is gone at the target, still held on record
    second = grant_of(ctx, "small")
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}  # the second grant has it, and not as prior
    assert {row["prior"] for row in rows_of(ctx, second)} == {False}
    end_now(ctx, second)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_an_elevation_refused_after_part_of_it_was_granted_ends_the_grant_and_takes_that_back(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "big")

    def then_refused() -> None:
        raise ElevationRefused("group cn=oncall is unsafe to grant")

    target.after["elevate"].append(then_refused)
    drain(ctx, clock)
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, grant_id)
    assert grant is not None
    assert grant.state.value == "REVOKED"
    assert target.accounts["alice"] == set()
    assert nothing_pending(ctx)


# --- claims that lapse while the target works ---------------------------------------------------


def test_an_elevation_slower_than_its_claim_cannot_land_after_its_withdrawal(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """The grant ends while the target is slow to apply it; the claim lapses, and another pass
    withdraws what is not there yet. Then the slow call lands: it must be taken back again."""
    grant_id = grant_of(ctx, "big")

    def revoked_and_withdrawn_meanwhile() -> None:
        end_now(ctx, grant_id)
        lapse_claims(clock)
        run_revocations(ctx)

    target.before["elevate"].append(revoked_and_withdrawn_meanwhile)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()
    assert nothing_pending(ctx)
    with ctx.db.read() as conn:
        (credential,) = issuance.issued_for_grant(conn, grant_id)
    assert credential["state"] == "revoked"


def test_an_elevation_that_lands_partly_after_its_withdrawal_and_then_fails_is_taken_back(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "big")

    def revoked_and_withdrawn_meanwhile() -> None:
        end_now(ctx, grant_id)
        lapse_claims(clock)
        run_revocations(ctx)

    def then_the_target_fails() -> None:
        raise TargetUnreachable("target corp: connection reset")

    target.before["elevate"].append(revoked_and_withdrawn_meanwhile)
    target.after["elevate"].append(then_the_target_fails)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()
    assert nothing_pending(ctx)


def test_an_attempt_that_lost_its_claim_before_granting_gives_nothing(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """Slow to look: meanwhile the claim lapses, another pass applies, the grant ends and is taken
    back. The first attempt, still holding its look at the target, must not grant after that."""
    grant_id = grant_of(ctx, "big")

    def applied_ended_and_withdrawn_meanwhile() -> None:
        lapse_claims(clock)
        run_revocations(ctx)
        end_now(ctx, grant_id)
        run_revocations(ctx)

    target.before["held"].append(applied_ended_and_withdrawn_meanwhile)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()
    assert {row["state"] for row in rows_of(ctx, grant_id)} == {elevations.RELEASED}
    with ctx.db.read() as conn:
        (credential,) = issuance.issued_for_grant(conn, grant_id)
    assert credential["state"] == "revoked"


def test_an_elevation_landing_late_is_not_taken_for_prior_by_a_grant_applied_meanwhile(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """The late call lands after its withdrawal; before it is recorded, another grant looks, sees
    G and would take it for held before the grant, to be kept for good."""
    first = grant_of(ctx, "small")
    second: list[str] = []

    def revoked_and_withdrawn_meanwhile() -> None:
        end_now(ctx, first)
        lapse_claims(clock)
        run_revocations(ctx)

    def landed_and_another_grant_applies() -> None:
        clock.advance(timedelta(seconds=1))
        second.append(grant_of(ctx, "small"))
        run_revocations(ctx)

    target.before["elevate"].append(revoked_and_withdrawn_meanwhile)
    target.after["elevate"].append(landed_and_another_grant_applies)
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}  # the second grant holds it
    assert {row["prior"] for row in rows_of(ctx, second[0])} == {False}
    end_now(ctx, second[0])
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_two_withdrawals_that_overlap_cannot_each_leave_the_item_to_the_other(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """Each grant's withdrawal sees the other still holding G and keeps it; whichever records
    last must find that nobody holds it any more and take it away."""
    big = grant_of(ctx, "big")
    small = grant_of(ctx, "small")
    drain(ctx, clock)
    end_now(ctx, big)

    def the_other_ends_and_is_withdrawn_meanwhile() -> None:
        end_now(ctx, small)
        lapse_claims(clock)
        run_revocations(ctx)

    target.before["withdraw"].append(the_other_ends_and_is_withdrawn_meanwhile)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()
    assert nothing_pending(ctx)


def test_two_spellings_of_one_account_cannot_each_leave_the_item_to_the_other(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """``ALICE`` and ``alice`` are one entry to the directory but two keys to the queue, so their
    work may run side by side; the count is kept by the account the target names."""
    big = grant_of(ctx, "big")
    upper = grant_of(ctx, "as-upper")
    drain(ctx, clock)
    assert {row["account"] for row in rows_of(ctx, upper)} == {"uid=alice"}
    end_now(ctx, big)

    def the_other_spelling_ends_meanwhile() -> None:
        end_now(ctx, upper)
        run_revocations(ctx)  # no claim to lapse: the queue sees another account

    target.before["withdraw"].append(the_other_spelling_ends_meanwhile)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_a_withdrawal_that_lands_after_another_grant_applied_gives_that_grant_its_item_back(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """The first grant's withdrawal decides while nobody else holds G; before its call lands, a
    grant for the same entry (spelled ``ALICE``, so the queue lets it run) is applied."""
    first = grant_of(ctx, "small")
    drain(ctx, clock)
    end_now(ctx, first)
    second: list[str] = []
    held_meanwhile: list[set[str]] = []

    def a_new_grant_applies_meanwhile() -> None:
        second.append(grant_of(ctx, "as-upper"))
        run_revocations(ctx)
        held_meanwhile.append(set(target.accounts["alice"]))

    target.before["withdraw"].append(a_new_grant_applies_meanwhile)
    drain(ctx, clock)
    assert held_meanwhile == [{G}]
    assert target.accounts["alice"] == {G}  # the second grant is live and holds it again
    assert {row["prior"] for row in rows_of(ctx, second[0])} == {False}
    end_now(ctx, second[0])
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_a_failed_elevation_does_not_delay_the_withdrawal_queued_while_it_ran(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "big")

    def revoked_then_the_target_fails() -> None:
        end_now(ctx, grant_id)
        raise TargetUnreachable("target corp: connection reset")

    target.before["elevate"].append(revoked_then_the_target_fails)
    assert run_revocations(ctx) == (0, 1)
    with ctx.db.read() as conn:
        (pending,) = issuance.pending_revocations(conn)
    assert pending["action"] == issuance.WITHDRAW
    assert pending["next_attempt_at"] <= clock.now()  # due at once, not after the elevation's backoff
    assert run_revocations(ctx) == (1, 0)
    assert target.accounts["alice"] == set()


# --- two broker replicas -------------------------------------------------------------------------


def test_two_replicas_never_work_on_one_account_at_once(
    db: Database, audit: AuditLog, clock: FrozenClock, target: HookedTarget
) -> None:
    first = context(db, audit, clock, target)
    other_db = Database(db.url)
    second = context(other_db, audit, clock, target)
    try:
        grant_of(first, "big")
        grant_of(first, "small")
        in_call, go_on = threading.Event(), threading.Event()

        def hold_the_call() -> None:
            in_call.set()
            go_on.wait(10)

        target.before["elevate"].append(hold_the_call)
        worker = threading.Thread(target=run_revocations, args=(first,), kwargs={"limit": 1})
        worker.start()
        assert in_call.wait(10)
        # The other replica finds alice's second item due, and leaves it: her first one is running.
        assert run_revocations(second, limit=1) == (0, 0)
        go_on.set()
        worker.join(10)
        drain(second, clock)
        assert target.overlaps == []
        assert target.accounts["alice"] == {G, OC}
    finally:
        other_db.dispose()


def test_an_item_seen_held_under_a_grant_that_lets_go_of_it_meanwhile_is_not_prior(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """The second grant (another spelling of the account, so nothing makes it wait) sees G, held
    under the first grant, whose withdrawal then runs before the second records what it saw."""
    first = grant_of(ctx, "small")
    drain(ctx, clock)

    def the_first_ends_and_is_withdrawn() -> None:
        end_now(ctx, first)
        run_revocations(ctx)

    target.after["held"].append(the_first_ends_and_is_withdrawn)
    second = grant_of(ctx, "as-upper")
    drain(ctx, clock)
    assert {row["prior"] for row in rows_of(ctx, second)} == {False}
    assert target.accounts["alice"] == {G}  # given again, not left to the grant that let go of it
    end_now(ctx, second)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_an_elevation_waits_while_the_audit_log_is_broken(
    ctx: WorkflowContext, target: HookedTarget, clock: FrozenClock
) -> None:
    """Granting waits for a repair, as activating does: nothing is given that is not on record."""
    grant_of(ctx, "small")
    with ctx.db.write() as conn:
        head = dict(conn.execute(sa.select(audit_head)).one()._mapping)
        conn.execute(audit_head.update().values(hash="0" * 64))
    assert run_revocations(ctx) == (0, 1)
    assert target.calls == []
    with ctx.db.write() as conn:
        conn.execute(audit_head.update().values(**head))
    drain(ctx, clock)
    assert target.accounts["alice"] == {G}
    (issued,) = audited(ctx, "credential.issued")
    assert issued["details"]["elevation"]["granted"] == [G]
