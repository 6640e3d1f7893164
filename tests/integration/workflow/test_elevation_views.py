"""The view of a grant's elevations reads the same on SQLite and PostgreSQL: each target's
account and state, each item's state, prior membership and outcome, and the queue's work still
pending, for many grants in one statement."""

from __future__ import annotations

from datetime import timedelta

from integration.workflow.test_elevation import GROUP, OTHER, ctx, drain, grant_of, target
from jitgate.clock import FrozenClock
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.elevation_views import elevations_by_grant
from jitgate.workflow.scheduler import expire_due, run_revocations
from support.providers import SwitchableElevation

__all__ = ["ctx", "target"]  # fixtures shared with test_elevation


def test_held_withdrawn_kept_and_pending_items_of_several_grants(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    target.accounts["alice"].add(GROUP)
    ended = grant_of(ctx, "prod-admins", minutes=10)
    drain(ctx, clock)
    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    drain(ctx, clock)
    held = grant_of(ctx, "prod-admins-too", minutes=60)
    drain(ctx, clock)
    target.up = False
    waiting = grant_of(ctx, "prod-admins", minutes=60)
    assert run_revocations(ctx) == (0, 1)
    with ctx.db.read() as conn:
        found = elevations_by_grant(conn, [ended, held, waiting, "g-none"])
    assert set(found) == {ended, held, waiting}
    (gone,) = found[ended]
    assert (gone["target"], gone["kind"], gone["account"], gone["state"]) == (
        "corp",
        "ldap",
        "uid=alice",
        "revoked",
    )
    assert [(i["item"], i["prior"], i["outcome"]) for i in gone["items"]] == [
        (GROUP, True, "kept: held before the grant"),
        (OTHER, False, "withdrawn"),
    ]
    assert gone["pending"] is None
    (holding,) = found[held]
    assert [(i["item"], i["state"], i["prior"]) for i in holding["items"]] == [(GROUP, "held", True)]
    (queued,) = found[waiting]
    assert queued["state"] == "elevating"
    assert {i["state"] for i in queued["items"]} == {"planned"}
    assert queued["pending"]["action"] == "elevate"
    assert queued["pending"]["attempts"] == 1
    assert "connection refused" in queued["pending"]["last_error"]
