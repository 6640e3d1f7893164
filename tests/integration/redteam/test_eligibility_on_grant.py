"""A request granted after its requester lost the right to ask for it must not become access.

Approvers review what is in their queue; they do not see that the requester has since been taken
out of the role's requesters' groups (moved team, left). Approving such a request is refused with
one line, and nothing is granted.
"""

from __future__ import annotations

import pytest

from jitgate.domain.model import Verdict
from jitgate.errors import PolicyDenied
from jitgate.store import queries as q
from jitgate.workflow import grants, requests, users
from jitgate.workflow.context import WorkflowContext
from support import ADMIN, BOB


def test_approving_a_request_of_someone_who_left_the_requesters_group_grants_nothing(
    ctx: WorkflowContext,
) -> None:
    alice, _token = users.add_user(
        ctx.db, ctx.audit, ctx.clock, actor="admin", name="alice", groups=["engineers"]
    )
    made = requests.submit(ctx, alice, role="prod-shell", reason="INC-5 disk", duration="30m")
    users.change_groups(ctx, ADMIN, "alice", add=[], remove=["engineers"])

    with pytest.raises(PolicyDenied, match="alice may no longer request role prod-shell"):
        requests.review(ctx, BOB, made["id"], verdict=Verdict.APPROVE, comment="ok")

    with ctx.db.read() as conn:
        assert q.grant_of_request(conn, made["id"]) is None
    assert requests.visible_request_view(ctx, ADMIN, made["id"])["state"] == "PENDING"


def test_a_holder_who_left_the_requesters_group_cannot_stretch_their_grant(ctx: WorkflowContext) -> None:
    alice, _token = users.add_user(
        ctx.db, ctx.audit, ctx.clock, actor="admin", name="alice", groups=["engineers"]
    )
    made = requests.submit(ctx, alice, role="stage-shell", duration="5m")  # auto-approved
    grant_id = made["grant"]["id"]
    users.change_groups(ctx, ADMIN, "alice", add=[], remove=["engineers"])

    # ``alice`` here still carries the groups she signed in with, as a cached token would.
    with pytest.raises(PolicyDenied, match="alice may no longer request role stage-shell"):
        grants.extend(ctx, alice, grant_id, duration="25m")
    assert grants.visible_grant_view(ctx, ADMIN, grant_id)["expires_at"] == made["grant"]["expires_at"]


def test_an_extension_approved_after_its_holder_left_the_group_moves_nothing(ctx: WorkflowContext) -> None:
    alice, _token = users.add_user(
        ctx.db, ctx.audit, ctx.clock, actor="admin", name="alice", groups=["engineers"]
    )
    made = requests.submit(ctx, alice, role="quick-fix", duration="10m")  # auto-approved up to 15m
    grant_id = made["grant"]["id"]
    asked = grants.extend(ctx, alice, grant_id, duration="1h")  # past 15m: needs an approver
    assert asked["state"] == "PENDING"
    users.change_groups(ctx, ADMIN, "alice", add=[], remove=["engineers"])

    with pytest.raises(PolicyDenied, match="alice may no longer request role quick-fix"):
        requests.review(ctx, BOB, asked["id"], verdict=Verdict.APPROVE, comment="ok")
    assert grants.visible_grant_view(ctx, ADMIN, grant_id)["expires_at"] == made["grant"]["expires_at"]
