"""Nothing a temporary MariaDB user defined keeps running after it is revoked.

Routines, views, events and triggers carry a DEFINER, and with ``SQL SECURITY DEFINER`` (the
default) run with the definer's privileges. Were they left behind when the user is dropped, each
would wait for an account of the same name to appear and then run with its rights; triggers would
meanwhile break every write to their table. So revocation drops every object whose definer is the
user, found in ``information_schema``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from dbkit import (
    MariadbEnv,
    issue_request,
    leftover_mariadb_logins,
    mariadb_login,
    mariadb_provider,
    mariadb_role,
    mariadb_root,
)
from dbkit import (
    mariadb_target as make_target,
)

from jitgate.errors import ProviderError
from jitgate.providers.base import CredentialProvider, Issued

pytestmark = pytest.mark.mariadb

NO_SUCH_ROUTINE = 1305
DEFINER_MISSING = 1449
DEFINED = (
    "SELECT 'routine', ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES WHERE DEFINER = %(d)s"
    " UNION ALL SELECT 'view', TABLE_SCHEMA, TABLE_NAME FROM information_schema.VIEWS WHERE DEFINER = %(d)s"
    " UNION ALL SELECT 'event', EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS WHERE DEFINER = %(d)s"
    " UNION ALL SELECT 'trigger', TRIGGER_SCHEMA, TRIGGER_NAME FROM information_schema.TRIGGERS"
    " WHERE DEFINER = %(d)s ORDER BY 1, 3"
)


@pytest.fixture
def provider(mariadb_env: MariadbEnv, tmp_path: Path) -> CredentialProvider:
    return mariadb_provider(mariadb_env, tmp_path)


@pytest.fixture
def handles(provider: CredentialProvider) -> Iterator[list[str]]:
    issued: list[str] = []
    yield issued
    for handle in issued:
        provider.revoke(make_target(), handle)


def issue(provider: CredentialProvider, handles: list[str], *privileges: str) -> Issued:
    request = issue_request(mariadb_role(privileges=privileges), make_target())
    handle = provider.new_handle(request)
    handles.append(handle)
    return provider.issue(request, handle)


def run(issued: Issued, *statements: str, schema: str | None = None) -> list[tuple[Any, ...]]:
    """Run ``statements`` as the issued login, in its database or in ``schema``."""
    with (
        mariadb_login(issued, schema) as conn,
        conn.cursor() as cur,
    ):
        rows: list[tuple[Any, ...]] = []
        for statement in statements:
            cur.execute(statement)
            rows = list(cur.fetchall())
        return rows


def defined_by(login: str) -> list[tuple[str, str, str]]:
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(DEFINED, {"d": f"{login}@%"})
        return [(str(kind), str(schema), str(name)) for kind, schema, name in cur.fetchall()]


@pytest.fixture
def planted(mariadb_env: MariadbEnv, provider: CredentialProvider, handles: list[str]) -> Iterator[Issued]:
    """A user that defined one of each kind of object, each running with its rights."""
    db = mariadb_env.database
    planter = issue(
        provider,
        handles,
        f"SELECT, INSERT, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, EVENT, TRIGGER ON {db}.*",
    )
    run(
        planter,
        "CREATE SQL SECURITY DEFINER VIEW peek AS SELECT * FROM orders",
        "CREATE PROCEDURE `le``ak`() SQL SECURITY DEFINER SELECT COUNT(*) FROM orders",
        "CREATE FUNCTION tally() RETURNS int SQL SECURITY DEFINER RETURN (SELECT COUNT(*) FROM orders)",
        "CREATE EVENT refill ON SCHEDULE EVERY 1 HOUR DO INSERT INTO orders VALUES (100, 'event')",
        "CREATE TRIGGER stamp BEFORE INSERT ON orders FOR EACH ROW SET NEW.item = CONCAT(NEW.item, '!')",
    )
    assert defined_by(planter.handle) == [
        ("event", db, "refill"),
        ("routine", db, "le`ak"),
        ("routine", db, "tally"),
        ("trigger", db, "stamp"),
        ("view", db, "peek"),
    ]
    yield planter
    with mariadb_root() as root, root.cursor() as cur:
        for statement in (
            "DROP VIEW IF EXISTS {}.peek",
            "DROP PROCEDURE IF EXISTS {}.`le``ak`",
            "DROP FUNCTION IF EXISTS {}.tally",
            "DROP EVENT IF EXISTS {}.refill",
            "DROP TRIGGER IF EXISTS {}.stamp",
        ):
            cur.execute(statement.format(f"`{db}`"))
        cur.execute(f"DELETE FROM `{db}`.orders WHERE id > 2")  # noqa: S608 - generated name


def test_revocation_drops_every_routine_view_event_and_trigger_the_user_defined(
    mariadb_env: MariadbEnv, provider: CredentialProvider, handles: list[str], planted: Issued
) -> None:
    outcome = provider.revoke(make_target(), planted.handle)

    assert defined_by(planted.handle) == []
    db = mariadb_env.database
    assert outcome == {
        "dropped": [
            f"trigger {db}.stamp",
            f"view {db}.peek",
            f"procedure {db}.le`ak",
            f"function {db}.tally",
            f"event {db}.refill",
        ]
    }
    with mariadb_root() as root, root.cursor() as cur:
        # Writes to the table no longer run the dead user's trigger (which would fail every one).
        cur.execute(f"INSERT INTO `{db}`.orders VALUES (3, 'cup')")  # noqa: S608 - generated name
        cur.execute(f"SELECT item FROM `{db}`.orders WHERE id = 3")  # noqa: S608 - generated name
        assert cur.fetchone() == ("cup",)
    assert provider.revoke(make_target(), planted.handle) is None  # twice is fine


def test_an_account_recreated_under_the_revoked_name_revives_nothing(
    mariadb_env: MariadbEnv, provider: CredentialProvider, handles: list[str], planted: Issued
) -> None:
    db = mariadb_env.database
    provider.revoke(make_target(), planted.handle)
    caller = issue(provider, handles, f"EXECUTE ON {db}.*")
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' ACCOUNT LOCK", (planted.handle,))
        cur.execute(f"GRANT SELECT, EXECUTE ON `{db}`.* TO %s@'%%'", (planted.handle,))
    try:
        with pytest.raises(pymysql.MySQLError) as failure:
            run(caller, "CALL `le``ak`()")
        assert failure.value.args[0] == NO_SUCH_ROUTINE
    finally:
        with mariadb_root() as root, root.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (planted.handle,))


@pytest.fixture
def blind_schema(mariadb_env: MariadbEnv) -> Iterator[str]:
    """A schema where the admin may hand out CREATE ROUTINE but could not see the routines made."""
    name = f"{mariadb_env.database}_blind"
    admin = f"`{mariadb_env.admin}`@'%'"
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"GRANT CREATE ROUTINE ON `{name}`.* TO {admin} WITH GRANT OPTION")
    yield name
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {admin}")
        cur.execute(f"GRANT CREATE USER, CONNECTION ADMIN ON *.* TO {admin}")
        cur.execute(f"GRANT ALL ON `{mariadb_env.database}`.* TO {admin} WITH GRANT OPTION")
        cur.execute(f"GRANT `{mariadb_env.readonly}` TO {admin} WITH ADMIN OPTION")


def test_no_login_may_define_objects_where_the_admin_could_not_find_them_again(
    mariadb_env: MariadbEnv, provider: CredentialProvider, handles: list[str], blind_schema: str
) -> None:
    request = issue_request(mariadb_role(privileges=(f"CREATE ROUTINE ON {blind_schema}.*",)), make_target())
    handle = provider.new_handle(request)
    with pytest.raises(ProviderError) as failure:
        provider.issue(request, handle)
    assert str(failure.value) == (
        f"privilege spec CREATE ROUTINE ON {blind_schema}.* on target shop-db: the admin could not see or"
        f" drop what the login defines there (it needs ALTER ROUTINE, DROP, EVENT, SHOW VIEW, TRIGGER on"
        f" {blind_schema}.*)"
    )
    assert handle not in leftover_mariadb_logins()

    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(
            f"GRANT SHOW VIEW, TRIGGER, EVENT, ALTER ROUTINE, DROP ON `{blind_schema}`.*"
            f" TO `{mariadb_env.admin}`@'%'"
        )
    definer = issue(provider, handles, f"CREATE ROUTINE ON {blind_schema}.*")
    run(definer, "CREATE PROCEDURE hidden() SQL SECURITY DEFINER SELECT 1", schema=blind_schema)
    assert provider.revoke(make_target(), definer.handle) == {"dropped": [f"procedure {blind_schema}.hidden"]}
    assert defined_by(definer.handle) == []


def test_a_sweep_that_fails_half_way_keeps_the_user_locked_and_the_revocation_pending(
    mariadb_env: MariadbEnv, provider: CredentialProvider, handles: list[str], blind_schema: str
) -> None:
    admin = f"`{mariadb_env.admin}`@'%'"
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(f"GRANT SHOW VIEW, TRIGGER, EVENT, ALTER ROUTINE, DROP ON `{blind_schema}`.* TO {admin}")
    definer = issue(provider, handles, f"CREATE ROUTINE ON {blind_schema}.*")
    run(definer, "CREATE PROCEDURE kept_alive() SQL SECURITY DEFINER SELECT 1", schema=blind_schema)
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(f"REVOKE ALTER ROUTINE ON `{blind_schema}`.* FROM {admin}")

    with pytest.raises(ProviderError, match="revoking login") as failure:
        provider.revoke(make_target(), definer.handle)
    assert "\n" not in str(failure.value)
    assert definer.handle in leftover_mariadb_logins()  # kept, so the retry finds its objects again
    with pytest.raises(pymysql.MySQLError):
        run(definer, "SELECT 1", schema=blind_schema)  # but locked already

    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(f"GRANT ALTER ROUTINE ON `{blind_schema}`.* TO {admin}")
    assert provider.revoke(make_target(), definer.handle) == {
        "dropped": [f"procedure {blind_schema}.kept_alive"]
    }
    assert definer.handle not in leftover_mariadb_logins()
    assert defined_by(definer.handle) == []
