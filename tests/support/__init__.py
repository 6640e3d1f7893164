"""Test data shared by the whole suite: a policy that exercises every kind of role, and people."""

import os
from typing import Any, NoReturn

import pytest

from jitgate.domain.identity import Identity
from jitgate.workflow.context import WorkflowContext

PG_ADMIN_URL = os.environ.get("JITGATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
# Skipping the tests of a missing real component is an explicit choice, never the default, and
# never in CI: a suite that passes because it did not test is worse than one that fails.
MAY_SKIP = os.environ.get("JITGATE_TESTS_MAY_SKIP", "").strip() == "1" and not IN_CI


def component_missing(what: str) -> NoReturn:
    """A missing real component fails the test; it skips only when JITGATE_TESTS_MAY_SKIP=1 outside CI."""
    if not MAY_SKIP:
        pytest.fail(f"{what} is required by this test but is not available (JITGATE_TESTS_MAY_SKIP=1 skips)")
    pytest.skip(f"{what} is not available here")


TEST_POLICY = """
targets:
  - name: web-1
    kind: ssh
    address: 127.0.0.1
    labels: {env: prod, team: web}
  - name: web-2
    kind: ssh
    address: 127.0.0.2
    labels: {env: prod, team: web}
  - name: stage-1
    kind: ssh
    address: 127.0.0.3
    labels: {env: stage}
  - name: vault-1
    kind: fake
    labels: {env: prod, team: data}
roles:
  - name: prod-shell
    targets: {labels: {env: prod, team: web}}
    ssh: {logins: [deploy]}
    default_duration: 1h
    max_duration: 4h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    reason: {required: true, pattern: '^(INC|CHG)-[0-9]+'}
    auto_approve:
      - requester_groups: [oncall]
    review_timeout: 2h
  - name: two-person
    targets: {names: [web-1]}
    ssh: {logins: [root]}
    max_duration: 1h
    requesters: [group:engineers]
    approvers: [group:sre-leads, user:admin]
    approvals_required: 2
  - name: stage-shell
    targets: {labels: {env: stage}}
    ssh: {logins: [deploy]}
    max_duration: 30m
    requesters: [group:engineers]
    approval: auto
  - name: quick-fix
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 2h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
    auto_approve:
      - max_duration: 15m
  - name: breakglass
    targets: {names: [web-1]}
    ssh: {logins: [deploy]}
    max_duration: 1h
    requesters: [group:oncall]
    approvers: [group:sre-leads]
    break_glass: true
  - name: vault-read
    targets: {names: [vault-1]}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""

ALICE = Identity("alice", frozenset({"engineers"}))
BOB = Identity("bob", frozenset({"sre-leads", "engineers"}))
ERIN = Identity("erin", frozenset({"sre-leads"}))
CAROL = Identity("carol", frozenset({"engineers", "oncall"}))
MALLORY = Identity("mallory", frozenset({"contractors"}))
ADMIN = Identity("admin", frozenset(), admin=True)


def audit_actions(context: WorkflowContext, **filters: Any) -> list[str]:
    from jitgate.audit.query import query

    with context.db.read() as conn:
        return [e.action for e in query(conn, limit=1000, **filters)]
