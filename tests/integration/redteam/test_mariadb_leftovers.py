"""Attacks on what a revoked MariaDB login leaves behind, on the real server.

The revocation drops every object whose DEFINER is the login. But MariaDB lets a login name its
active role as the definer (``CREATE DEFINER=CURRENT_ROLE TRIGGER ...``) without any privilege
beyond the role's own: such a trigger, view, routine or event belongs to no user, survives the
login, and keeps running with the role's privileges, on every later write to the table by anyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import MariadbEnv, issue_request, mariadb_login, mariadb_provider, mariadb_role, mariadb_root
from dbkit import mariadb_target as make_target

from jitgate.providers.base import CredentialProvider, Issued

pytestmark = pytest.mark.mariadb


@pytest.fixture
def provider(mariadb_env: MariadbEnv, tmp_path: Path) -> CredentialProvider:
    return mariadb_provider(mariadb_env, tmp_path)


@pytest.fixture
def writer_role(mariadb_env: MariadbEnv) -> Iterator[str]:
    """A role that may write the shop's orders and define triggers on them, as a job role would."""
    name = f"jg_rt_writer_{mariadb_env.suffix}"
    db = f"`{mariadb_env.database}`"
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(f"CREATE ROLE `{name}`")
        cur.execute(f"GRANT SELECT, INSERT, UPDATE, TRIGGER ON {db}.* TO `{name}`")
        cur.execute(f"GRANT `{name}` TO `{mariadb_env.admin}`@'%' WITH ADMIN OPTION")
    yield name
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            (mariadb_env.database,),
        )
        for (trigger,) in cur.fetchall():
            cur.execute(f"DROP TRIGGER IF EXISTS {db}.`{trigger}`")
        cur.execute(f"DROP ROLE IF EXISTS `{name}`")


def run_as(issued: Issued, statement: str) -> None:
    with (
        mariadb_login(issued) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(statement)


def triggers_on_orders(env: MariadbEnv) -> list[tuple[str, str]]:
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(
            "SELECT TRIGGER_NAME, DEFINER FROM information_schema.TRIGGERS"
            " WHERE EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = 'orders'",
            (env.database,),
        )
        return [(str(name), str(definer)) for name, definer in cur.fetchall()]


@pytest.mark.xfail(
    strict=True,
    reason="objects defined as the login's role (DEFINER=CURRENT_ROLE) are not the login's and stay",
)
def test_a_trigger_a_login_defined_as_its_role_is_gone_once_the_login_is_revoked(
    mariadb_env: MariadbEnv, provider: CredentialProvider, writer_role: str
) -> None:
    request = issue_request(mariadb_role(roles=(writer_role,)), make_target())
    handle = provider.new_handle(request)
    issued = provider.issue(request, handle)
    try:
        run_as(
            issued,
            "CREATE DEFINER=CURRENT_ROLE TRIGGER stamp BEFORE INSERT ON orders"
            " FOR EACH ROW SET NEW.item = CONCAT('seen:', NEW.item)",
        )
    finally:
        provider.revoke(make_target(), handle)

    assert triggers_on_orders(mariadb_env) == []
