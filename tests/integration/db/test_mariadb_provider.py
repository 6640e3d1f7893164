"""The MariaDB provider against the real server, with an admin that is not root.

MariaDB has no VALID UNTIL: these tests show that the login lives exactly until the broker revokes
it, and that revocation kills open connections and drops the user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from dbkit import (
    MARIADB_ENV,
    MARIADB_HOST,
    MARIADB_PORT,
    MariadbEnv,
    TcpProxy,
    issue_request,
    leftover_mariadb_logins,
    mariadb_provider,
    mariadb_role,
    mariadb_root,
    provider_context,
)
from dbkit import (
    mariadb_login as login,
)
from dbkit import (
    mariadb_target as make_target,
)

from jitgate.errors import ProviderError
from jitgate.providers.base import CredentialProvider, Issued
from jitgate.providers.mariadb import create_provider, native_password_hash, parse_privilege

pytestmark = pytest.mark.mariadb

ACCESS_DENIED = {1044, 1045, 1142, 1227}


@pytest.fixture
def provider(mariadb_env: MariadbEnv, tmp_path: Path) -> CredentialProvider:
    return mariadb_provider(mariadb_env, tmp_path)


@pytest.fixture
def cleanup(provider: CredentialProvider) -> Iterator[list[str]]:
    handles: list[str] = []
    yield handles
    for handle in handles:
        provider.revoke(make_target(), handle)


def issue(provider: CredentialProvider, cleanup: list[str], **access: Any) -> Issued:
    request = issue_request(mariadb_role(**access), make_target())
    handle = provider.new_handle(request)
    cleanup.append(handle)
    return provider.issue(request, handle)


def query(conn: pymysql.connections.Connection[pymysql.cursors.Cursor], statement: str) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(statement)
        return tuple(cur.fetchall())


def user_exists(name: str) -> bool:
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute("SELECT 1 FROM mysql.user WHERE User = %s", (name,))
        return cur.fetchone() is not None


def refused(conn: pymysql.connections.Connection[pymysql.cursors.Cursor], statement: str) -> int:
    with pytest.raises(pymysql.MySQLError) as failure:
        query(conn, statement)
    return int(failure.value.args[0])


def test_login_works_with_its_role_only_until_revoked(
    mariadb_env: MariadbEnv, provider: CredentialProvider, cleanup: list[str]
) -> None:
    issued = issue(provider, cleanup, roles=(mariadb_env.readonly,))
    assert issued.record["server_expiry"] is False
    assert issued.record["default_role"] == mariadb_env.readonly
    assert issued.secret["dsn"] == (
        f"mysql://{issued.handle}:{issued.secret['password']}@{MARIADB_HOST}:{MARIADB_PORT}/{mariadb_env.database}"
    )
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute("SELECT authentication_string FROM mysql.user WHERE User = %s", (issued.handle,))
        assert cur.fetchone() == (native_password_hash(str(issued.secret["password"])),)

    conn = login(issued)
    assert query(conn, "SELECT CURRENT_ROLE(), COUNT(*) FROM orders") == ((mariadb_env.readonly, 2),)
    assert refused(conn, "INSERT INTO orders VALUES (3, 'cup')") in ACCESS_DENIED
    assert refused(conn, "CREATE TABLE mine (id int)") in ACCESS_DENIED
    assert refused(conn, "SELECT * FROM mysql.user") in ACCESS_DENIED
    with pytest.raises(pymysql.MySQLError) as wrong:
        pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=issued.handle, password="not-it")
    assert wrong.value.args[0] == 1045

    provider.revoke(make_target(), issued.handle)

    with pytest.raises(pymysql.MySQLError):
        query(conn, "SELECT 1")  # the open connection was killed
    assert not user_exists(issued.handle)
    with pytest.raises(pymysql.MySQLError) as gone:
        login(issued)
    # For an unknown user MariaDB fakes a random auth plugin (against user probing): 1045 or 1698.
    assert gone.value.args[0] in {1045, 1698}
    provider.revoke(make_target(), issued.handle)  # twice is fine


def test_privilege_specs_grant_exactly_what_they_say(
    mariadb_env: MariadbEnv, provider: CredentialProvider, cleanup: list[str]
) -> None:
    issued = issue(provider, cleanup, privileges=(f"select,  insert ON {mariadb_env.database}.orders",))
    assert issued.record["privileges"] == [f"SELECT, INSERT ON {mariadb_env.database}.orders"]
    assert issued.record["default_role"] is None
    with login(issued) as conn:
        query(conn, "INSERT INTO orders VALUES (3, 'cup')")
        assert query(conn, "SELECT COUNT(*) FROM orders") == ((3,),)
        assert refused(conn, "DELETE FROM orders WHERE id = 3") in ACCESS_DENIED
        assert refused(conn, "DROP TABLE orders") in ACCESS_DENIED
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute(f"DELETE FROM `{mariadb_env.database}`.orders WHERE id = 3")  # noqa: S608 - generated name


@pytest.mark.parametrize(
    "spec",
    [
        "ALL ON *.*",
        "SELECT ON *.*",
        "ALL PRIVILEGES ON {db}.*",
        "SELECT ON mysql.user",
        "SELECT ON Information_Schema.*",
        "GRANT OPTION ON {db}.*",
        "SUPER ON {db}.*",
        "FILE ON {db}.*",
        "SELECT ON {db}.orders; DROP USER root",
        "SELECT ON `{db}`.orders",
        "SELECT (id) ON {db}.orders",
        "SELECT, ON {db}.orders",
        "SELECT ON {db}.orders WITH GRANT OPTION",
    ],
)
def test_privilege_specs_outside_the_whitelist_are_refused_before_anything_is_created(
    mariadb_env: MariadbEnv, provider: CredentialProvider, spec: str
) -> None:
    request = issue_request(mariadb_role(privileges=(spec.format(db=mariadb_env.database),)), make_target())
    handle = provider.new_handle(request)
    with pytest.raises(ProviderError, match="privilege spec"):
        provider.issue(request, handle)
    # Only this login is checked: tests running alongside create others on the same server.
    assert handle not in leftover_mariadb_logins()


def test_parse_privilege_normalises() -> None:
    grant = parse_privilege("  show   view, Select ON shop.*  ")
    assert (grant.privileges, grant.database, grant.table) == (("SHOW VIEW", "SELECT"), "shop", None)
    assert grant.grant_sql() == "GRANT SHOW VIEW, SELECT ON `shop`.* TO %s@%s"


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        ({"roles": ("jg_no_such_role",)}, "role jg_no_such_role does not exist on target shop-db"),
        ({"roles": ("ro`; DROP USER root; --",)}, "would need quoting"),
        ({"privileges": ("SELECT ON {db}.no_such_table",)}, "granting SELECT ON"),
        ({"privileges": ("SELECT ON jg_not_granted_db.*",)}, "Access denied"),
    ],
)
def test_failure_half_way_leaves_no_user_behind(
    mariadb_env: MariadbEnv, provider: CredentialProvider, access: dict[str, Any], expected: str
) -> None:
    if "privileges" in access:
        access = {"privileges": tuple(p.format(db=mariadb_env.database) for p in access["privileges"])}
    request = issue_request(mariadb_role(**access), make_target())
    handle = provider.new_handle(request)
    with pytest.raises(ProviderError) as failure:
        provider.issue(request, handle)
    assert expected in str(failure.value)
    assert "\n" not in str(failure.value)
    assert not user_exists(handle)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, f"environment variable {MARIADB_ENV} is not set"),
        ({MARIADB_ENV: "postgresql://root:hunter2-secret@127.0.0.1/x"}, "is not mysql://"),
        ({MARIADB_ENV: "mysql://root:hunter2-secret@127.0.0.1:port/x"}, "is not mysql://"),
        ({MARIADB_ENV: "mysql://root:hunter2-secret@127.0.0.1:3306/x?ssl=1"}, "is not mysql://"),
        ({MARIADB_ENV: f"mysql://nobody_zz:hunter2-secret@{MARIADB_HOST}:{MARIADB_PORT}/"}, "cannot connect"),
        ({MARIADB_ENV: f"mysql://root:hunter2-secret@{MARIADB_HOST}:1/"}, "cannot connect"),
    ],
)
def test_a_bad_admin_dsn_is_one_clear_line_without_the_secret(
    tmp_path: Path, mariadb_env: MariadbEnv, environ: dict[str, str], expected: str
) -> None:
    provider = create_provider(provider_context(tmp_path, environ))
    request = issue_request(mariadb_role(roles=(mariadb_env.readonly,)), make_target())
    handle = provider.new_handle(request)
    for attempt in (
        lambda: provider.issue(request, handle),
        lambda: provider.revoke(make_target(), handle),
    ):
        with pytest.raises(ProviderError) as failure:
            attempt()
        message = str(failure.value)
        assert expected in message
        assert "hunter2" not in message
        assert "\n" not in message
    assert not user_exists(handle)


def test_an_admin_that_cannot_kill_connections_is_refused(mariadb_env: MariadbEnv, tmp_path: Path) -> None:
    weak = f"jg_weak_{mariadb_env.suffix}"
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY 'weak-pw'", (weak,))
        cur.execute(f"GRANT CREATE USER ON *.* TO `{weak}`@'%'")
        cur.execute(f"GRANT ALL ON `{mariadb_env.database}`.* TO `{weak}`@'%' WITH GRANT OPTION")
    try:
        dsn = f"mysql://{weak}:weak-pw@{MARIADB_HOST}:{MARIADB_PORT}/{mariadb_env.database}"
        provider = create_provider(provider_context(tmp_path, {MARIADB_ENV: dsn}))
        request = issue_request(
            mariadb_role(privileges=(f"SELECT ON {mariadb_env.database}.*",)), make_target()
        )
        handle = provider.new_handle(request)
        for attempt in (
            lambda: provider.issue(request, handle),
            lambda: provider.revoke(make_target(), handle),
        ):
            with pytest.raises(ProviderError, match="lacks CONNECTION ADMIN"):
                attempt()
        assert not user_exists(handle)
        health = provider.check(make_target())
        assert not health.ok
        assert "CONNECTION ADMIN" in health.detail
    finally:
        with mariadb_root() as root, root.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (weak,))


def test_revocation_fails_while_the_server_is_away_and_succeeds_when_it_is_back(
    mariadb_env: MariadbEnv, tmp_path: Path, tcp_proxy: Callable[[tuple[str, int]], TcpProxy]
) -> None:
    proxy = tcp_proxy((MARIADB_HOST, MARIADB_PORT))
    dsn = mariadb_env.admin_dsn().replace(f":{MARIADB_PORT}/", f":{proxy.port}/")
    provider = create_provider(provider_context(tmp_path, {MARIADB_ENV: dsn}))
    request = issue_request(mariadb_role(roles=(mariadb_env.readonly,)), make_target())
    issued = provider.issue(request, provider.new_handle(request))
    session = pymysql.connect(
        host=MARIADB_HOST,
        port=MARIADB_PORT,
        user=issued.handle,
        password=str(issued.secret["password"]),
        database=mariadb_env.database,
    )

    proxy.stop()
    with pytest.raises(ProviderError, match="cannot connect") as failure:
        provider.revoke(make_target(), issued.handle)
    assert mariadb_env.admin_password not in str(failure.value)
    assert failure.value.__cause__ is None
    assert user_exists(issued.handle)
    assert query(session, "SELECT COUNT(*) FROM orders") == ((2,),)  # no server-side expiry to help

    proxy.start()
    provider.revoke(make_target(), issued.handle)
    assert not user_exists(issued.handle)
    with pytest.raises(pymysql.MySQLError):
        query(session, "SELECT 1")


def test_connection_limit_and_health(
    mariadb_env: MariadbEnv, provider: CredentialProvider, cleanup: list[str]
) -> None:
    issued = issue(provider, cleanup, roles=(mariadb_env.readonly,), connection_limit=2)
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute("SELECT max_user_connections FROM mysql.user WHERE User = %s", (issued.handle,))
        assert cur.fetchone() == (2,)
    health = provider.check(make_target())
    assert health.ok, health.detail
    assert mariadb_env.admin in health.detail


def test_no_secret_in_any_log_record_or_error(
    mariadb_env: MariadbEnv, provider: CredentialProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request = issue_request(mariadb_role(roles=(mariadb_env.readonly,)), make_target())
    issued = provider.issue(request, provider.new_handle(request))
    session = login(issued)
    provider.revoke(make_target(), issued.handle)
    session.close()
    bad = issue_request(mariadb_role(roles=(mariadb_env.readonly, "jg_missing")), make_target())
    with pytest.raises(ProviderError) as failure:
        provider.issue(bad, provider.new_handle(bad))

    texts = [str(failure.value), *(record.getMessage() for record in caplog.records)]
    texts += [record.exc_text or "" for record in caplog.records]
    assert any(issued.handle in text for text in texts), "the provider should log what it does"
    for text in texts:
        assert str(issued.secret["password"]) not in text
        assert native_password_hash(str(issued.secret["password"])) not in text
        assert mariadb_env.admin_password not in text
