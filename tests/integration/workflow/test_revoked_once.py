"""A credential is recorded as revoked once, also when its grant ends while the login is created.

Found by ``bench/crash_test.py`` (the race needs no kill): the holder revoked the grant while the
broker was creating a database login for it. The revocation ran before the login existed, found
nothing and was recorded as ``credential.revoked``; the login then appeared, the issue found the
grant ended and queued the revocation again, which dropped it and was recorded a second time.
Now the revocation of a credential still being created is left to its issue (``ISSUING_GRACE``),
which queues it the moment it finishes.
"""

from __future__ import annotations

import pytest

from jitgate.errors import Conflict
from jitgate.workflow import credentials, grants
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.scheduler import run_revocations
from support import ADMIN, ALICE, audit_actions
from support.providers import SwitchableProvider


@pytest.fixture
def fake(ctx: WorkflowContext) -> SwitchableProvider:
    provider = SwitchableProvider()
    ctx.providers["fake"] = provider
    return provider


def test_a_login_whose_grant_ended_while_it_was_created_is_recorded_revoked_once(
    ctx: WorkflowContext, fake: SwitchableProvider
) -> None:
    req = svc.submit(ctx, ALICE, role="vault-read", duration="10m", reason="INC-1")
    real_issue = fake.issue

    def slow_issue(request: object, handle: str) -> object:
        # While the target is still creating the login, the grant is revoked and its revocation
        # runs: it finds nothing to drop yet. Then the login appears.
        grants.revoke(ctx, ADMIN, req["grant"]["id"], comment="incident over")
        run_revocations(ctx)
        return real_issue(request, handle)  # type: ignore[arg-type]

    fake.issue = slow_issue  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="ended while the credential was being issued"):
        credentials.issue(ctx, ALICE, "vault-1")
    run_revocations(ctx)
    assert fake.logins == set()
    assert audit_actions(ctx, action="credential.revoked") == ["credential.revoked"]
