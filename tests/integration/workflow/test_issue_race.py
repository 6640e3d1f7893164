"""A credential is never issued under a grant that ended between being found and being locked.

Issuing reads the holder's grants in force, then locks the chosen one and checks it again. Here a
revocation commits in exactly that gap (PostgreSQL, where rows are locked one by one; SQLite holds
the database's write lock through the whole step, so nothing can land there)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from jitgate.errors import Conflict
from jitgate.store import queries as q
from jitgate.store.tables import credentials as credential_rows
from jitgate.workflow import credentials, grants
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from support import ALICE
from support.providers import SwitchableProvider


@pytest.mark.parametrize("db", ["postgres"], indirect=True)  # only there can the gap be reached
def test_a_grant_revoked_between_finding_and_locking_it_issues_nothing(
    ctx: WorkflowContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ctx.db.locks_rows
    fake = SwitchableProvider()
    ctx.providers["fake"] = fake
    grant = svc.submit(ctx, ALICE, role="vault-read", duration="10m", reason="INC-1")["grant"]
    real_get_grant = q.get_grant
    ended: list[str] = []

    def revoked_just_before_the_lock(conn: sa.Connection, grant_id: str, *, lock: bool = False) -> object:
        if lock and not ended:
            ended.append(grant_id)
            grants.revoke(ctx, ALICE, grant_id, comment="ended in the gap")  # its own transaction, committed
        return real_get_grant(conn, grant_id, lock=lock)

    monkeypatch.setattr(q, "get_grant", revoked_just_before_the_lock)
    with pytest.raises(Conflict, match=f"grant {grant['id']} ended while the credential was being issued"):
        credentials.issue(ctx, ALICE, "vault-1")

    assert ended == [grant["id"]]
    assert fake.logins == set()
    with ctx.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(credential_rows)).scalar_one() == 0
