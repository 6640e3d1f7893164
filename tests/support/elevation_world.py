"""A fake directory whose calls can be interrupted at chosen points, the policy its attacks use,
and the steps they share: for tests of the broker's counting of elevations (workflow level)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from jitgate.audit.chain import AuditLog
from jitgate.audit.query import query
from jitgate.clock import FrozenClock
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Target
from jitgate.store import elevations, issuance
from jitgate.store.db import Database
from jitgate.workflow import grants
from jitgate.workflow import requests as svc
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from jitgate.workflow.scheduler import REVOCATION_LEASE, run_revocations
from support import ADMIN, ALICE
from support.providers import SwitchableElevation

G = "cn=prod-admins,ou=groups,dc=example,dc=org"
OC = "cn=oncall,ou=groups,dc=example,dc=org"
TARGET = """
targets:
  - name: corp
    kind: ldap
    url: ldap://127.0.0.1:3899
    bind_dn: cn=admin,dc=example,dc=org
    bind_password_env: CORP_LDAP_BIND_PASSWORD
    user_dn: "uid={user},ou=people,dc=example,dc=org"
"""
ROLES = f"""
roles:
  - name: big
    targets: {{names: [corp]}}
    ldap: {{groups: ["{G}", "{OC}"]}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
  - name: small
    targets: {{names: [corp]}}
    ldap: {{groups: ["{G}"]}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
  - name: reviewed
    targets: {{names: [corp]}}
    ldap: {{groups: ["{G}"]}}
    max_duration: 4h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
  - name: glass
    targets: {{names: [corp]}}
    ldap: {{groups: ["{G}"]}}
    max_duration: 1h
    requesters: [group:oncall]
    approvers: [group:sre-leads]
    break_glass: true
  - name: as-upper
    targets: {{names: [corp]}}
    ldap: {{groups: ["{G}"], existing_account: {{alice: ALICE}}}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
  - name: mapped
    targets: {{names: [corp]}}
    ldap: {{groups: ["{OC}"], existing_account: {{bob: robert}}}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
"""
POLICY = TARGET + ROLES
Hook = Callable[[], None]


class HookedTarget(SwitchableElevation):
    """The fake directory, with one-shot hooks run before or after the change of a call, and
    account names compared without case (as a directory compares them): ``ALICE`` is alice."""

    def __init__(self, accounts: dict[str, set[str]]) -> None:
        super().__init__(accounts)
        self.before: dict[str, list[Hook]] = {"held": [], "elevate": [], "withdraw": []}
        self.after: dict[str, list[Hook]] = {"held": [], "elevate": [], "withdraw": []}
        self.in_flight: dict[str, int] = {}
        self.overlaps: list[str] = []

    def _hook(self, hooks: dict[str, list[Hook]], call: str) -> None:
        if hooks[call]:
            hooks[call].pop(0)()

    def find_account(self, target: Target, account: str) -> str | None:
        return super().find_account(target, account.lower())

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        self._hook(self.before, "held")
        seen = super().held(target, account, items)
        self._hook(self.after, "held")
        return seen

    @contextmanager
    def _turn(self, account: str) -> Iterator[None]:
        """Counts calls in flight per account; a second one at once is an overlap."""
        with self._lock:
            self.in_flight[account] = self.in_flight.get(account, 0) + 1
            if self.in_flight[account] > 1:
                self.overlaps.append(account)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight[account] -= 1

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> dict[str, object]:
        self._reachable(target)
        with self._turn(account):
            self._hook(self.before, "elevate")
            done = super().elevate(target, account, items)
            self._hook(self.after, "elevate")
            return done

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> dict[str, object]:
        self._reachable(target)
        with self._turn(account):
            self._hook(self.before, "withdraw")
            done = super().withdraw(target, account, items)
            self._hook(self.after, "withdraw")
            return done


def context(
    db: Database, audit: AuditLog, clock: FrozenClock, target: SwitchableElevation, *, policy: str = POLICY
) -> WorkflowContext:
    """A broker whose ``ldap`` targets are ``target``, under ``policy`` (by default this module's)."""
    return WorkflowContext(
        db=db,
        policies=PolicyHolder(parse_policy(policy)),
        audit=audit,
        clock=clock,
        providers={"ldap": target},  # type: ignore[dict-item]
        revocation_backoff_seconds=1.0,
    )


def grant_of(ctx: WorkflowContext, role: str, *, who: Any = ALICE, minutes: int = 30) -> str:
    view = svc.submit(ctx, who, role=role, reason="incident 7", duration=f"{minutes}m")
    assert view["state"] == "ACTIVE"
    return str(view["grant"]["id"])


def drain(ctx: WorkflowContext, clock: FrozenClock, *, passes: int = 20) -> None:
    """Run the queue, a second at a time, until nothing is pending that could run."""
    for _ in range(passes):
        done, failed = run_revocations(ctx)
        with ctx.db.read() as conn:
            left = issuance.next_revocation_attempt(conn)
        if not done and not failed and left is None:
            return
        clock.advance(timedelta(seconds=1))


def end_now(ctx: WorkflowContext, grant_id: str) -> None:
    grants.revoke(ctx, ADMIN, grant_id, comment="done")


def lapse_claims(clock: FrozenClock) -> None:
    """Time passes beyond the claim a pass put on its work: another pass may take it again."""
    clock.advance(REVOCATION_LEASE + timedelta(seconds=1))


def audited(ctx: WorkflowContext, action: str) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [
            {"grant_id": e.grant_id, "details": e.details} for e in query(conn, action=action, limit=1000)
        ]


def rows_of(ctx: WorkflowContext, grant_id: str) -> list[Any]:
    with ctx.db.read() as conn:
        return elevations.of_grants(conn, [grant_id])


def nothing_pending(ctx: WorkflowContext) -> bool:
    with ctx.db.read() as conn:
        return issuance.pending_revocations(conn) == []


def reload(ctx: WorkflowContext, text: str) -> None:
    ctx.policies.replace(parse_policy(text))
