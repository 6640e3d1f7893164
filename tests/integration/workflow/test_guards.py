"""Guards that only show when steps meet in an unusual order: two extensions pending at once, a
credential asked for after an explicit revocation."""

from __future__ import annotations

import pytest

from jitgate.domain.model import Verdict
from jitgate.errors import PolicyDenied
from jitgate.workflow import credentials, grants
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from support import ALICE, BOB, audit_actions
from support.providers import SwitchableProvider


@pytest.fixture
def fake(ctx: WorkflowContext) -> SwitchableProvider:
    provider = SwitchableProvider()
    ctx.providers["fake"] = provider
    return provider


def test_two_extensions_pending_at_once_never_take_a_grant_past_the_maximum(ctx: WorkflowContext) -> None:
    """Each of two 1h extensions of a 3h grant fits a 4h role alone; approving both would not."""
    req = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-1", duration="3h")
    grant = svc.review(ctx, BOB, req["id"], verdict=Verdict.APPROVE)["grant"]
    first = grants.extend(ctx, ALICE, grant["id"], duration="1h", reason="INC-1")
    second = grants.extend(ctx, ALICE, grant["id"], duration="1h", reason="INC-1")
    assert (first["state"], second["state"]) == ("PENDING", "PENDING")

    assert svc.review(ctx, BOB, first["id"], verdict=Verdict.APPROVE)["grant"]["seconds_left"] == 4 * 3600
    with pytest.raises(PolicyDenied, match="4h"):
        svc.review(ctx, BOB, second["id"], verdict=Verdict.APPROVE)

    assert svc.request_view_for(ctx, second["id"])["state"] == "PENDING"
    assert svc.request_view_for(ctx, req["id"])["grant"]["seconds_left"] == 4 * 3600
    assert audit_actions(ctx, action="grant.extended") == ["grant.extended"]
    assert audit_actions(ctx, action="access.refused") == ["access.refused"]


def test_no_credential_after_the_grant_is_revoked(ctx: WorkflowContext, fake: SwitchableProvider) -> None:
    view = svc.submit(ctx, ALICE, role="vault-read", duration="30m")
    _, before = credentials.issue(ctx, ALICE, "vault-1")
    grants.revoke(ctx, ALICE, view["grant"]["id"], comment="done early")

    with pytest.raises(PolicyDenied, match="no active grant"):
        credentials.issue(ctx, ALICE, "vault-1")

    assert fake.logins == {before.handle}  # only the one from before; its revocation is queued
    assert audit_actions(ctx, action="credential.issued") == ["credential.issued"]
