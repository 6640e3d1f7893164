"""Directory groups through the broker's workflow, against a real slapd: a grant's entry is a
member while the grant is active and not after, what it was a member of before stays, a directory
that is down when the grant ends is retried until the membership is gone, and an entry that does
not exist is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from jitgate.audit.chain import AuditLog
from jitgate.audit.query import query
from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity
from jitgate.errors import PolicyDenied
from jitgate.policy.loader import parse_policy
from jitgate.providers.ldap import LdapProvider
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.store.db import Database
from jitgate.workflow import requests as svc
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import expire_due, run_revocations
from support import ALICE, BOB
from support.slapd import ROOT_DN, Slapd, Tree, target_yaml

pytestmark = pytest.mark.slapd


def role_yaml(name: str, groups: list[str], extra: str = "") -> str:
    quoted = ", ".join(f'"{dn}"' for dn in groups)
    return f"""
  - name: {name}
    targets: {{names: [corp]}}
    ldap: {{groups: [{quoted}]{extra}}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
"""


Build = Callable[[str], WorkflowContext]


@pytest.fixture
def build(db: Database, audit: AuditLog, clock: FrozenClock, provider: LdapProvider) -> Build:
    """A workflow context on the real ldap provider for a policy's text."""

    def made(policy: str) -> WorkflowContext:
        return WorkflowContext(
            db=db,
            policies=PolicyHolder(parse_policy(policy)),
            audit=audit,
            clock=clock,
            providers={"ldap": provider},
            revocation_backoff_seconds=1.0,
        )

    return made


@pytest.fixture
def groups(tree: Tree) -> dict[str, str]:
    return {
        "names": tree.add_group("prod-admins"),
        "unique": tree.add_group("dba", "groupOfUniqueNames"),
        "posix": tree.add_group("wheel", "posixGroup"),
    }


@pytest.fixture
def ctx(build: Build, slapd: Slapd, tree: Tree, groups: dict[str, str]) -> WorkflowContext:
    roles = (
        role_yaml("prod-admins", [groups["names"], groups["unique"], groups["posix"]])
        + role_yaml("prod-admins-too", [groups["names"].upper().replace(",", ", ")])
        + role_yaml("nowhere", [tree.group_dn("nonesuch")])
        + role_yaml("mapped", [groups["names"]], ", existing_account: {bob: robert}")
    )
    return build("targets:\n" + target_yaml(slapd, tree) + "roles:" + roles)


def grant_of(ctx: WorkflowContext, role: str, *, who: Identity = ALICE, minutes: int = 30) -> str:
    view = svc.submit(ctx, who, role=role, reason="incident 7", duration=f"{minutes}m")
    assert view["state"] == "ACTIVE"
    return str(view["grant"]["id"])


def end(ctx: WorkflowContext, clock: FrozenClock, minutes: int) -> tuple[int, int]:
    clock.advance(timedelta(minutes=minutes))
    expire_due(ctx)
    return run_revocations(ctx)


def memberships(tree: Tree, uid: str = "alice") -> set[str]:
    """Every group of the tree that lists the entry, searched as a consumer of the directory would."""
    dn = tree.person_dn(uid)
    return tree.groups_of(dn) | tree.groups_of(dn, "uniqueMember") | tree.groups_of(uid, "memberUid")


def actions(ctx: WorkflowContext, action: str) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [{"grant_id": e.grant_id, "details": e.details} for e in query(conn, action=action)]


def test_the_entry_is_a_member_during_the_window_and_not_after(
    ctx: WorkflowContext, clock: FrozenClock, tree: Tree, groups: dict[str, str]
) -> None:
    alice = tree.add_person("alice", posix=True)
    grant_of(ctx, "prod-admins", minutes=30)
    assert memberships(tree) == set()  # nothing happens inside the request's transaction
    assert run_revocations(ctx) == (1, 0)
    assert memberships(tree) == set(groups.values())
    (issued,) = actions(ctx, "credential.issued")
    assert issued["details"]["elevation"]["account"] == alice
    assert sorted(issued["details"]["elevation"]["joined"]) == sorted(groups.values())
    assert end(ctx, clock, 30) == (1, 0)
    assert memberships(tree) == set()
    (revoked,) = actions(ctx, "credential.revoked")
    assert revoked["details"]["outcome"]["items"] == dict.fromkeys(groups.values(), "withdrawn")


def test_a_membership_held_before_the_grant_survives_it(
    ctx: WorkflowContext, clock: FrozenClock, tree: Tree, groups: dict[str, str]
) -> None:
    alice = tree.add_person("alice", posix=True)
    tree.set_members(groups["names"], "member", [ROOT_DN, alice])
    grant_of(ctx, "prod-admins", minutes=10)
    run_revocations(ctx)
    assert memberships(tree) == set(groups.values())
    end(ctx, clock, 10)
    assert memberships(tree) == {groups["names"]}
    (revoked,) = actions(ctx, "credential.revoked")
    assert revoked["details"]["outcome"]["items"][groups["names"]] == "kept: held before the grant"


def test_two_spellings_of_one_group_are_one_group_to_the_broker(
    ctx: WorkflowContext, clock: FrozenClock, tree: Tree, groups: dict[str, str]
) -> None:
    tree.add_person("alice", posix=True)
    grant_of(ctx, "prod-admins", minutes=10)
    grant_of(ctx, "prod-admins-too", minutes=60)  # names the same group in capitals, with spaces
    for _ in range(3):
        run_revocations(ctx)
        clock.advance(timedelta(seconds=1))
    end(ctx, clock, 10)
    assert memberships(tree) == {groups["names"]}  # the second grant still holds it
    end(ctx, clock, 50)
    assert memberships(tree) == set()


def test_the_directory_down_when_the_grant_ends_is_retried_until_the_membership_is_gone(
    ctx: WorkflowContext, clock: FrozenClock, slapd: Slapd, tree: Tree, groups: dict[str, str]
) -> None:
    tree.add_person("alice", posix=True)
    grant_of(ctx, "prod-admins", minutes=10)
    run_revocations(ctx)
    slapd.stop()
    try:
        assert end(ctx, clock, 10) == (0, 1)
        with ctx.db.read() as conn:
            (pending,) = issuance.pending_revocations(conn)
        assert pending["action"] == "withdraw"
        assert f"cannot reach {slapd.url}" in pending["last_error"]
        clock.advance(timedelta(minutes=1))
        assert run_revocations(ctx) == (0, 1)  # still down: still pending
    finally:
        slapd.start()
    assert memberships(tree) == set(groups.values())
    clock.advance(timedelta(minutes=5))
    assert run_revocations(ctx) == (1, 0)
    assert memberships(tree) == set()
    with ctx.db.read() as conn:
        assert issuance.pending_revocations(conn) == []


def test_a_user_search_maps_the_identity_to_its_entry(
    build: Build, clock: FrozenClock, slapd: Slapd, tree: Tree
) -> None:
    group = tree.add_group("oncall")
    carol = tree.add_person("c.lee", mail="alice@example.org")
    search = f'{{base: "{tree.people}", filter: "(&(objectClass=inetOrgPerson)(mail={{user}}@example.org))"}}'
    policy = (
        "targets:\n" + target_yaml(slapd, tree, user_search=search) + "roles:" + role_yaml("oncall", [group])
    )
    ctx = build(policy)
    grant_of(ctx, "oncall", minutes=5)
    run_revocations(ctx)
    assert tree.groups_of(carol) == {group}
    end(ctx, clock, 5)
    assert tree.groups_of(carol) == set()
    tree.add_person("b.one", mail="bob@example.org")
    tree.add_person("b.two", mail="bob@example.org")
    with pytest.raises(PolicyDenied, match="user_search matches several entries for bob; exactly one must"):
        svc.submit(ctx, BOB, role="oncall", reason="incident 7", duration="5m")


def test_an_entry_that_does_not_exist_is_refused_and_none_is_created(
    ctx: WorkflowContext, tree: Tree, groups: dict[str, str]
) -> None:
    with pytest.raises(PolicyDenied, match="account alice does not exist on target corp"):
        svc.submit(ctx, ALICE, role="prod-admins", reason="incident 7", duration="30m")
    with pytest.raises(PolicyDenied, match="account robert does not exist on target corp"):
        svc.submit(ctx, BOB, role="mapped", reason="incident 7", duration="30m")
    assert tree.slapd.values(tree.person_dn("alice"), "uid") == set()
    assert memberships(tree) == set()


def test_an_entry_deleted_before_the_grant_is_applied_ends_the_grant(
    ctx: WorkflowContext, tree: Tree, groups: dict[str, str]
) -> None:
    alice = tree.add_person("alice", posix=True)
    grant_id = grant_of(ctx, "prod-admins")
    tree.remove(alice)
    run_revocations(ctx)
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, grant_id)
    assert grant is not None
    assert grant.state.value == "REVOKED"
    (refused,) = actions(ctx, "elevation.refused")
    assert "does not exist" in refused["details"]["error"]
    assert memberships(tree) == set()


def test_a_group_that_does_not_exist_ends_the_grant(ctx: WorkflowContext, tree: Tree) -> None:
    tree.add_person("alice")
    grant_id = grant_of(ctx, "nowhere")
    run_revocations(ctx)
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, grant_id)
    assert grant is not None
    assert grant.state.value == "REVOKED"
    (refused,) = actions(ctx, "elevation.refused")
    assert f"group {tree.group_dn('nonesuch')} does not exist" in refused["details"]["error"]
