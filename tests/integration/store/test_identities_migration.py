"""A database from before token expiry keeps working: its tokens get an end 30 days after the
upgrade (so nobody is locked out by it), and then authenticate as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from jitgate.auth.tokens import TokenAuthenticator, new_token, token_hash
from jitgate.store import accounts
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade


def test_tokens_from_before_the_upgrade_get_an_end_and_keep_working(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    upgrade(engine, "0001")
    token = new_token()
    created = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)  # stored naive UTC
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (name, kind, groups, admin, disabled, created_at) "
                "VALUES ('alice', 'user', '[\"engineers\"]', 0, 0, :at)"
            ),
            {"at": created},
        )
        conn.execute(
            sa.text(
                "INSERT INTO api_tokens (id, token_hash, user_name, created_at) "
                "VALUES ('old', :h, 'alice', :at)"
            ),
            {"h": token_hash(token), "at": created},
        )
    before = datetime.now(UTC)
    upgrade(engine)
    engine.dispose()

    db = Database(url)
    with db.read() as conn:
        (old,) = accounts.list_tokens(conn, user="alice")
    assert (
        before + timedelta(days=30) - timedelta(minutes=1)
        <= old.expires_at
        <= datetime.now(UTC) + timedelta(days=30)
    )
    assert old.last_used_at is None
    assert TokenAuthenticator(db).authenticate(token).name == "alice"
    db.dispose()
