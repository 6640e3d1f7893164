"""A copy of the broker's database hands out no identity: API tokens and web session ids are
kept only as their SHA-256, and no table holds either in any column."""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.runtime import Runtime
from jitgate.store.tables import api_tokens, metadata, web_sessions
from jitgate.workflow.users import add_user


def _everything(runtime: Runtime) -> str:
    """Every value of every row of every table, as one text."""
    with runtime.ctx.db.read() as conn:
        return "\n".join(
            repr(tuple(row)) for table in metadata.sorted_tables for row in conn.execute(sa.select(table))
        )


def test_neither_the_token_nor_the_session_id_is_in_the_database(
    runtime: Runtime, clock: FrozenClock
) -> None:
    _, token = add_user(
        runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name="alice", groups=["engineers"]
    )
    with TestClient(create_app(runtime, run_scheduler=False), base_url="https://jitgate.test") as browser:
        page = browser.get("/ui/login").text
        form = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert form is not None
        browser.post("/ui/login", data={"token": token, "csrf": form.group(1)})
        session_id = browser.cookies["jitgate_session"]
        assert browser.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    stored = _everything(runtime)
    for secret in (token, session_id):
        assert secret not in stored
        assert secret.split("_", 1)[1] not in stored  # not even without its prefix
    with runtime.ctx.db.read() as conn:
        hashes = set(conn.execute(sa.select(api_tokens.c.token_hash)).scalars())
        sessions = set(conn.execute(sa.select(web_sessions.c.id_hash)).scalars())
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    assert hashlib.sha256(session_id.encode()).hexdigest() in sessions
