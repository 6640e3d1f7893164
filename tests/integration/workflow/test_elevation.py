"""Elevating existing accounts, as the broker's workflow sees it: applied through the work queue
when a grant becomes active, taken back when it ends, never early for another grant that holds the
same thing, never taking away what the account held before, retried while the target is down,
and refused (the grant ended) when the account does not exist."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitgate.audit.chain import AuditLog
from jitgate.clock import FrozenClock
from jitgate.errors import PolicyDenied
from jitgate.store import elevations, issuance
from jitgate.store import queries as q
from jitgate.store.db import Database
from jitgate.workflow import grants
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.scheduler import expire_due, run_revocations
from support import ADMIN, ALICE, BOB
from support.elevation_world import audited, context, drain, grant_of
from support.providers import SwitchableElevation

GROUP = "cn=prod-admins,ou=groups,dc=example,dc=org"
OTHER = "cn=oncall,ou=groups,dc=example,dc=org"
POLICY = f"""
targets:
  - name: corp
    kind: ldap
    url: ldap://127.0.0.1:3899
    bind_dn: cn=admin,dc=example,dc=org
    bind_password_env: CORP_LDAP_BIND_PASSWORD
    user_dn: "uid={{user}},ou=people,dc=example,dc=org"
roles:
  - name: prod-admins
    targets: {{names: [corp]}}
    ldap: {{groups: ["{GROUP}", "{OTHER}"]}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
  - name: prod-admins-too
    targets: {{names: [corp]}}
    ldap: {{groups: ["{GROUP}"]}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
  - name: mapped
    targets: {{names: [corp]}}
    ldap: {{groups: ["{OTHER}"], existing_account: {{bob: robert}}}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
"""


@pytest.fixture
def target() -> SwitchableElevation:
    return SwitchableElevation({"alice": set(), "robert": set()})


@pytest.fixture
def ctx(db: Database, audit: AuditLog, clock: FrozenClock, target: SwitchableElevation) -> WorkflowContext:
    return context(db, audit, clock, target, policy=POLICY)


def test_an_elevation_is_applied_once_active_and_taken_back_at_expiry(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    grant_of(ctx, "prod-admins", minutes=30)
    assert target.accounts["alice"] == set()  # nothing happens inside the request's transaction
    assert run_revocations(ctx) == (1, 0)
    assert target.accounts["alice"] == {GROUP, OTHER}
    (issued,) = audited(ctx, "credential.issued")
    assert issued["details"]["elevation"]["account"] == "uid=alice"
    clock.advance(timedelta(minutes=30))
    assert expire_due(ctx) == 1
    assert run_revocations(ctx) == (1, 0)
    assert target.accounts["alice"] == set()
    (revoked,) = audited(ctx, "credential.revoked")
    assert revoked["details"]["outcome"]["items"] == {GROUP: "withdrawn", OTHER: "withdrawn"}


def test_two_grants_holding_the_same_group_do_not_take_it_from_each_other(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    first = grant_of(ctx, "prod-admins", minutes=10)
    grant_of(ctx, "prod-admins-too", minutes=60)
    drain(ctx, clock)
    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    drain(ctx, clock)
    # The first grant's end leaves the group the second still holds; the other group goes.
    assert target.accounts["alice"] == {GROUP}
    (revoked,) = audited(ctx, "credential.revoked")
    assert revoked["grant_id"] == first
    assert revoked["details"]["outcome"]["items"][GROUP].startswith("kept: still held under grant ")
    clock.advance(timedelta(minutes=50))
    expire_due(ctx)
    drain(ctx, clock)
    assert target.accounts["alice"] == set()


def test_a_membership_held_before_the_grant_survives_it(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    target.accounts["alice"].add(GROUP)
    grant_of(ctx, "prod-admins", minutes=10)
    drain(ctx, clock)
    assert target.calls == [("elevate", "uid=alice", (OTHER,))]
    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    drain(ctx, clock)
    assert target.accounts["alice"] == {GROUP}
    assert target.calls[-1] == ("withdraw", "uid=alice", (OTHER,))


def test_a_prior_membership_survives_grants_that_overlap(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    target.accounts["alice"].add(GROUP)
    grant_of(ctx, "prod-admins-too", minutes=10)
    drain(ctx, clock)
    grant_of(ctx, "prod-admins", minutes=20)  # sees the group held, under the first grant
    drain(ctx, clock)
    clock.advance(timedelta(minutes=20))
    expire_due(ctx)
    drain(ctx, clock)
    assert target.accounts["alice"] == {GROUP}


def test_an_account_that_does_not_exist_is_refused_and_none_is_created(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    del target.accounts["alice"]
    with pytest.raises(PolicyDenied, match="account alice does not exist on target corp"):
        svc.submit(ctx, ALICE, role="prod-admins", reason="incident 7", duration="30m")
    assert target.calls == []


def test_an_account_gone_by_the_time_the_grant_starts_ends_the_grant(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "prod-admins")
    del target.accounts["alice"]
    drain(ctx, clock)
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, grant_id)
    assert grant is not None
    assert grant.state.value == "REVOKED"
    (refused,) = audited(ctx, "elevation.refused")
    assert "does not exist" in refused["details"]["error"]
    run_revocations(ctx)  # its planned items are released without touching the target
    assert target.calls == []
    with ctx.db.read() as conn:
        assert issuance.pending_revocations(conn) == []


def test_an_identity_the_map_leaves_out_has_no_account(ctx: WorkflowContext) -> None:
    with pytest.raises(PolicyDenied, match="maps alice to no existing account on target corp"):
        svc.submit(ctx, ALICE, role="mapped", reason="incident 7", duration="30m")
    view = svc.submit(ctx, BOB, role="mapped", reason="incident 7", duration="30m")
    assert view["state"] == "ACTIVE"


def test_the_target_down_at_expiry_is_retried_until_the_elevation_is_gone(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    grant_of(ctx, "prod-admins", minutes=10)
    drain(ctx, clock)
    target.up = False
    clock.advance(timedelta(minutes=10))
    expire_due(ctx)
    assert run_revocations(ctx) == (0, 1)
    with ctx.db.read() as conn:
        (pending,) = issuance.pending_revocations(conn)
    assert pending["action"] == "withdraw"
    assert "connection refused" in pending["last_error"]
    assert target.accounts["alice"] == {GROUP, OTHER}
    target.up = True
    clock.advance(timedelta(minutes=1))
    assert run_revocations(ctx) == (1, 0)
    assert target.accounts["alice"] == set()


def test_a_grant_ended_before_its_elevation_ran_never_touches_the_target(
    ctx: WorkflowContext, target: SwitchableElevation, clock: FrozenClock
) -> None:
    grant_id = grant_of(ctx, "prod-admins")
    grants.revoke(ctx, ADMIN, grant_id, comment="wrong person")
    drain(ctx, clock)
    assert target.calls == []
    with ctx.db.read() as conn:
        rows = elevations.of_grants(conn, [grant_id])
    assert {row["state"] for row in rows} == {"released"}
