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
from jitgate.workflow import requests, users
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
