"""Both database providers tell a target they cannot reach (``TargetUnreachable``, on which the
revocation worker skips the target's other revocations in the batch) from a server that answered
with an error (a plain ``ProviderError``: every revocation is still tried)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbkit import (
    MARIADB_ENV,
    MARIADB_HOST,
    MARIADB_PORT,
    PG_ENV,
    PG_HOST,
    PG_PORT,
    MariadbEnv,
    PgEnv,
    TcpProxy,
    issue_request,
    mariadb_role,
    pg_role,
    provider_context,
)

from jitgate.errors import ProviderError, TargetUnreachable
from jitgate.policy.model import Role, Target
from jitgate.providers import mariadb, postgres
from jitgate.providers.base import CredentialProvider

KINDS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
SERVERS = {"postgres": (PG_HOST, PG_PORT), "mariadb": (MARIADB_HOST, MARIADB_PORT)}


@dataclass
class Setup:
    provider: CredentialProvider
    target: Target
    role: Role
    admin_password: str

    def new_handle(self) -> str:
        return self.provider.new_handle(issue_request(self.role, self.target))


def setup(
    request: pytest.FixtureRequest, kind: str, port: int, tmp_path: Path, *, database: str | None = None
) -> Setup:
    """A provider whose admin DSN goes to ``port`` on loopback (and to ``database``, if given)."""
    if kind == "postgres":
        pg: PgEnv = request.getfixturevalue("pg_env")
        variable, dsn, password, own = PG_ENV, pg.admin_dsn(port=port), pg.admin_password, pg.database
        create, role = postgres.create_provider, pg_role(pg.readonly)
    else:
        maria: MariadbEnv = request.getfixturevalue("mariadb_env")
        variable, password, own = MARIADB_ENV, maria.admin_password, maria.database
        dsn = maria.admin_dsn().replace(f":{MARIADB_PORT}/", f":{port}/")
        create, role = mariadb.create_provider, mariadb_role(roles=(maria.readonly,))
    if database is not None:
        dsn = dsn.replace(f"/{own}", f"/{database}")
    provider = create(provider_context(tmp_path, {variable: dsn}))
    target = Target(name=f"{kind}-db", kind=kind, admin_dsn_env=variable, options={"connect_timeout": 2})
    return Setup(provider, target, role, password)


def assert_clean(failure: pytest.ExceptionInfo[ProviderError], db: Setup, *secrets: str) -> None:
    """One line naming the target, no secret, no chained driver exception."""
    message = str(failure.value)
    assert f"target {db.target.name}: cannot connect" in message
    assert "\n" not in message
    for secret in secrets:
        assert secret not in message
    assert failure.value.__cause__ is None
    assert failure.value.__suppress_context__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", KINDS)
def test_a_stopped_proxy_makes_the_target_unreachable(
    request: pytest.FixtureRequest,
    kind: str,
    tcp_proxy: Callable[[tuple[str, int]], TcpProxy],
    tmp_path: Path,
) -> None:
    proxy = tcp_proxy(SERVERS[kind])
    db = setup(request, kind, proxy.port, tmp_path)
    issue = issue_request(db.role, db.target)
    issued = db.provider.issue(issue, db.provider.new_handle(issue))  # an admin connection stays pooled

    proxy.stop()
    for _ in range(2):
        with pytest.raises(TargetUnreachable) as failure:
            db.provider.revoke(db.target, issued.handle)
        assert failure.value.code == "target_unreachable"
        assert_clean(failure, db, db.admin_password, str(issued.secret["password"]))
    assert not db.provider.check(db.target).ok

    proxy.start()
    db.provider.revoke(db.target, issued.handle)


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_closed_before_the_server_says_anything_is_unreachable(
    request: pytest.FixtureRequest,
    kind: str,
    tcp_proxy: Callable[[tuple[str, int]], TcpProxy],
    tmp_path: Path,
) -> None:
    """The proxy is up but nothing listens behind it: it accepts, then closes without a word."""
    proxy = tcp_proxy(("127.0.0.1", free_port()))
    db = setup(request, kind, proxy.port, tmp_path)
    with pytest.raises(TargetUnreachable) as failure:
        db.provider.revoke(db.target, db.new_handle())
    assert_clean(failure, db, db.admin_password)


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_that_answers_with_an_error_is_not_unreachable(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    """A missing database fails every attempt too, but the server was reached and said why."""
    db = setup(request, kind, SERVERS[kind][1], tmp_path, database="jg_no_such_db_zz")
    with pytest.raises(ProviderError) as failure:
        db.provider.revoke(db.target, db.new_handle())
    assert not isinstance(failure.value, TargetUnreachable)
    assert "jg_no_such_db_zz" in str(failure.value)
    assert_clean(failure, db, db.admin_password)
