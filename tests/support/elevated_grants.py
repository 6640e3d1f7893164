"""A broker whose directory target (kind ``ldap``) is the fake ``SwitchableElevation``, with alice's
grants in each state an elevated item can be in: one ended (a group withdrawn, one kept because
she was a member before), one holding its group, and one still to be applied while the directory
is down. For the tests of how the API, the console and ``jitgate grants`` show elevations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.policy.loader import parse_policy
from jitgate.runtime import Runtime
from jitgate.workflow import grants, requests
from jitgate.workflow.scheduler import run_revocations
from jitgate.workflow.users import add_user
from support.providers import SwitchableElevation

PRIOR = "cn=prod-admins,ou=groups,dc=example,dc=org"
"""A group alice was a member of before any grant."""
GROUP = "cn=oncall,ou=groups,dc=example,dc=org"
OTHER = "cn=db-admins,ou=groups,dc=example,dc=org"
POLICY = f"""
targets:
  - name: web-1
    kind: ssh
    address: 127.0.0.1
  - name: corp-directory
    kind: ldap
    url: ldap://127.0.0.1:3899
    bind_dn: cn=admin,dc=example,dc=org
    bind_password_env: CORP_LDAP_BIND_PASSWORD
    user_dn: "uid={{user}},ou=people,dc=example,dc=org"
roles:
  - name: prod-admins
    targets: {{names: [corp-directory]}}
    ldap: {{groups: ["{PRIOR}", "{GROUP}"]}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
  - name: oncall
    targets: {{names: [corp-directory]}}
    ldap: {{groups: ["{GROUP}"]}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
  - name: db-admins
    targets: {{names: [corp-directory]}}
    ldap: {{groups: ["{OTHER}"]}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
  - name: shell
    targets: {{names: [web-1]}}
    ssh: {{logins: [deploy]}}
    max_duration: 4h
    requesters: [group:engineers]
    approval: auto
"""


@dataclass
class ElevatedGrants:
    runtime: Runtime
    target: SwitchableElevation
    token: str
    """alice's API token."""
    ended: str
    """Revoked: GROUP withdrawn from her entry, PRIOR kept."""
    held: str
    """Active: GROUP held."""
    pending: str
    """Active: OTHER still to be applied, one attempt failed on the directory being down."""
    shell: str
    """Active, elevating nothing."""


def elevated_grants(runtime: Runtime, clock: FrozenClock) -> ElevatedGrants:
    ctx = runtime.ctx
    ctx.policies.replace(parse_policy(POLICY))
    target = SwitchableElevation({"alice": {PRIOR}})
    ctx.providers["ldap"] = target  # type: ignore[assignment]
    identity, token = add_user(
        ctx.db, ctx.audit, clock, actor=SYSTEM.name, name="alice", groups=["engineers"]
    )

    def grant(role: str) -> str:
        made = requests.submit(ctx, identity, role=role, reason="INC-7", duration="1h")
        return str(made["grant"]["id"])

    def drain() -> None:
        for _ in range(5):
            if run_revocations(ctx) == (0, 0):
                return
            clock.advance(timedelta(seconds=1))  # work held back behind the same account falls due

    ended = grant("prod-admins")
    drain()
    clock.advance(timedelta(minutes=5))
    grants.revoke(ctx, identity, ended, comment="done")
    drain()
    held = grant("oncall")
    drain()
    target.up = False
    pending = grant("db-admins")
    assert run_revocations(ctx) == (0, 1)
    shell = grant("shell")
    return ElevatedGrants(runtime, target, token, ended, held, pending, shell)
