"""A grant ends once, even when the one ending it read the grant before someone else ended it.

Row locks keep the broker's own callers apart; the compare-and-set on the grant's state is what
holds when they do not (a caller with a copy read earlier, a replica whose lock came too late).
The loser changes nothing: no second end state, no second audit record, no second revocation.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.domain.model import GrantEnd
from jitgate.store import queries as q
from jitgate.store.tables import revocations
from jitgate.workflow import credentials, grants
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from support import ALICE, audit_actions
from support.providers import SwitchableProvider


def test_a_grant_ended_meanwhile_is_not_ended_again_from_an_older_copy(
    ctx: WorkflowContext, clock: FrozenClock
) -> None:
    ctx.providers["fake"] = SwitchableProvider()
    grant = svc.submit(ctx, ALICE, role="vault-read", duration="10m", reason="INC-1")["grant"]
    credentials.issue(ctx, ALICE, "vault-1")
    with ctx.db.read() as conn:
        older = q.get_grant(conn, grant["id"])
    assert older is not None
    grants.revoke(ctx, ALICE, grant["id"], comment="done early")
    clock.advance(timedelta(minutes=10))

    with ctx.transaction() as conn:
        again = grants.end(ctx, conn, older, reason=GrantEnd.EXPIRED, now=clock.now(), actor=SYSTEM.name)

    assert again is False
    with ctx.db.read() as conn:
        now_held = q.get_grant(conn, grant["id"])
        queued = conn.execute(sa.select(sa.func.count()).select_from(revocations)).scalar_one()
    assert now_held is not None
    assert now_held.state.value == "REVOKED"
    assert audit_actions(ctx, action="grant.revoked") == ["grant.revoked"]
    assert audit_actions(ctx, action="grant.expired") == []
    assert queued == 1
