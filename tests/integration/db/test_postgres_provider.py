"""The PostgreSQL provider against the real server, with a CREATEROLE-only admin (no superuser)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbkit import PG_ENV, PG_HOST, PG_PORT, PgEnv, TcpProxy, issue_request, pg_role, provider_context
from psycopg import errors as pg_errors

from jitgate.errors import ProviderError
from jitgate.policy.model import Target
from jitgate.providers.base import CredentialProvider, Issued
from jitgate.providers.postgres import PostgresProvider, create_provider

pytestmark = pytest.mark.postgres


def make_target(**options: Any) -> Target:
    return Target(name="orders-db", kind="postgres", admin_dsn_env=PG_ENV, options=options)


@pytest.fixture
def provider(pg_env: PgEnv, tmp_path: Path) -> CredentialProvider:
    return create_provider(provider_context(tmp_path, {PG_ENV: pg_env.admin_dsn()}))


@pytest.fixture
def cleanup(pg_env: PgEnv, provider: CredentialProvider) -> Iterator[list[tuple[Target, str]]]:
    """Handles a test issued; revoked at the end even when the test fails half-way."""
    issued: list[tuple[Target, str]] = []
    yield issued
    for target, handle in issued:
        provider.revoke(target, handle)


def issue(
    provider: CredentialProvider,
    cleanup: list[tuple[Target, str]],
    target: Target,
    *member_of: str,
    **kw: Any,
) -> Issued:
    request = issue_request(pg_role(*member_of, **kw), target)
    handle = provider.new_handle(request)
    cleanup.append((target, handle))
    return provider.issue(request, handle)


def role_row(env: PgEnv, login: str) -> tuple[Any, ...] | None:
    with env.superuser() as db:
        return db.execute(
            "SELECT rolpassword, rolvaliduntil, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin,"
            " rolconnlimit FROM pg_authid WHERE rolname = %s",
            [login],
        ).fetchone()


def scram_matches(verifier: str, password: str) -> bool:
    """Check a SCRAM-SHA-256 verifier the way the server does: trust auth here would accept anything."""
    _, iterations_salt, keys = verifier.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return hmac.compare_digest(base64.b64decode(stored_key), hashlib.sha256(client_key).digest())


def user_connection(
    issued: Issued, dbname: str | None = None, autocommit: bool = True
) -> psycopg.Connection[Any]:
    extra = {"dbname": dbname} if dbname else {}
    return psycopg.connect(str(issued.secret["dsn"]), autocommit=autocommit, **extra)


def test_new_handle_is_a_safe_fresh_login_name(tmp_path: Path) -> None:
    provider = PostgresProvider({})
    request = issue_request(pg_role("readonly"), make_target(), user="Émile O'Brien-Smith+ops@example.com")
    names = {provider.new_handle(request) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert re.fullmatch(r"jit_[a-z0-9]{1,16}_[0-9a-f]{12}", name)
        assert len(name.encode()) <= 63
        assert name.startswith("jit_mileobriensmitho_")


def test_credential_logs_in_and_can_do_exactly_what_its_role_allows(
    pg_env: PgEnv, provider: CredentialProvider, cleanup: list[tuple[Target, str]]
) -> None:
    issued = issue(provider, cleanup, make_target(), pg_env.readonly)
    login, password = issued.handle, str(issued.secret["password"])

    assert issued.record == {
        "login": login,
        "member_of": [pg_env.readonly],
        "valid_until": issued.valid_before.isoformat(),
        "database": pg_env.database,
    }
    assert issued.secret["user"] == login
    assert (issued.secret["host"], issued.secret["port"]) == (PG_HOST, PG_PORT)
    row = role_row(pg_env, login)
    assert row is not None
    verifier, valid_until, superuser, createrole, createdb, canlogin, _ = row
    assert scram_matches(verifier, password)
    assert not scram_matches(verifier, password + "x")
    assert valid_until == issued.valid_before
    assert (superuser, createrole, createdb, canlogin) == (False, False, False, True)

    with user_connection(issued) as conn:
        assert conn.execute("SELECT current_user, count(*) FROM app.orders GROUP BY 1").fetchone() == (
            login,
            2,
        )
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("INSERT INTO app.orders VALUES (3, 'cup')")
        for schema in ("locked", "public", "work"):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(f"CREATE TABLE {schema}.mine (id int)")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("SELECT nextval('app.ticket_seq')")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute(f"SET ROLE {pg_env.admin}")

    provider.revoke(make_target(), login)
    assert role_row(pg_env, login) is None


def test_revoke_ends_open_sessions_reassigns_objects_and_leaves_nothing_behind(
    pg_env: PgEnv, provider: CredentialProvider, cleanup: list[tuple[Target, str]]
) -> None:
    target = make_target(reassign_to=pg_env.owner, databases=[pg_env.other_database])
    issued = issue(provider, cleanup, target, pg_env.creator)
    login = issued.handle
    with pg_env.superuser() as db:
        oid = db.execute("SELECT oid FROM pg_roles WHERE rolname = %s", [login]).fetchone()
        # The sequence's owner grants the login something directly, not through its group role.
        db.execute(f"SET ROLE {pg_env.owner}; GRANT USAGE, SELECT ON SEQUENCE app.ticket_seq TO {login}")
    with user_connection(issued) as conn:
        conn.execute("CREATE TABLE work.made (id serial PRIMARY KEY, note text)")
        conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA work GRANT SELECT ON TABLES TO {pg_env.readonly}")
        assert conn.execute("SELECT nextval('app.ticket_seq')").fetchone() == (1,)
    with user_connection(issued, dbname=pg_env.other_database) as conn:
        conn.execute("CREATE TABLE work.elsewhere (id int)")
    idle = user_connection(issued)
    busy = user_connection(issued, autocommit=False)
    # An open transaction holding a lock on a table the revoke must reassign.
    busy.execute("INSERT INTO work.made (note) VALUES ('in flight')")

    provider.revoke(target, login)

    for session in (idle, busy):
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
        session.close()
    assert role_row(pg_env, login) is None
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        user_connection(issued)
    with pg_env.superuser() as db:
        owners = db.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
            " WHERE c.relnamespace = 'work'::regnamespace ORDER BY 1"
        ).fetchall()
        assert owners == [("made", pg_env.owner), ("made_id_seq", pg_env.owner), ("made_pkey", pg_env.owner)]
        db.execute("DROP TABLE work.made")
        acl = db.execute(
            "SELECT relacl::text FROM pg_class WHERE oid = 'app.ticket_seq'::regclass"
        ).fetchone()
        assert acl is not None
        assert login not in str(acl[0])
        assert db.execute("SELECT count(*) FROM pg_default_acl").fetchone() == (0,)
        assert oid is not None
        assert db.execute("SELECT count(*) FROM pg_shdepend WHERE refobjid = %s", [oid[0]]).fetchone() == (0,)
    with pg_env.superuser(pg_env.other_database) as db:
        assert db.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'elsewhere'").fetchone() == (
            pg_env.owner,
        )

    provider.revoke(target, login)  # twice is fine


def test_objects_are_dropped_by_default_in_every_database_the_login_left_them_in(
    pg_env: PgEnv, provider: CredentialProvider, cleanup: list[tuple[Target, str]]
) -> None:
    issued = issue(provider, cleanup, make_target(), pg_env.creator)
    with user_connection(issued) as conn:
        conn.execute("CREATE TABLE work.mine (id int)")
    with user_connection(issued, dbname=pg_env.other_database) as conn:
        conn.execute("CREATE TABLE work.stray (id int)")
    with pg_env.superuser() as db:
        db.execute(f"REVOKE CONNECT ON DATABASE {pg_env.other_database} FROM PUBLIC")
    try:
        with pytest.raises(
            ProviderError, match=f"cannot connect to database {pg_env.other_database}"
        ) as failure:
            provider.revoke(make_target(), issued.handle)
    finally:
        with pg_env.superuser() as db:
            db.execute(f"GRANT CONNECT ON DATABASE {pg_env.other_database} TO PUBLIC")
    assert "\n" not in str(failure.value)
    assert role_row(pg_env, issued.handle) is not None  # the revocation stays pending
    with pytest.raises(psycopg.OperationalError):
        user_connection(issued)  # already NOLOGIN: a half-done revocation still locks the door

    outcome = provider.revoke(make_target(), issued.handle)  # the other database was found unlisted
    assert outcome == {"objects": "dropped", "databases": sorted([pg_env.database, pg_env.other_database])}
    assert role_row(pg_env, issued.handle) is None
    for database in (pg_env.database, pg_env.other_database):
        with pg_env.superuser(database) as db:
            left = db.execute("SELECT tablename FROM pg_tables WHERE tablename IN ('mine', 'stray')")
            assert left.fetchall() == []


def test_a_grant_the_admin_cannot_take_back_keeps_the_revocation_pending_and_loud(
    pg_env: PgEnv, provider: CredentialProvider, cleanup: list[tuple[Target, str]]
) -> None:
    issued = issue(provider, cleanup, make_target(), pg_env.readonly)
    with pg_env.superuser() as db:
        db.execute("CREATE SEQUENCE locked.root_seq")
        db.execute(f"GRANT USAGE ON SEQUENCE locked.root_seq TO {issued.handle}")

    with pytest.raises(ProviderError) as failure:
        provider.revoke(make_target(), issued.handle)
    assert "root_seq" in str(failure.value)
    assert "the admin needs the privileges of whoever granted the login rights" in str(failure.value)
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        user_connection(issued)

    with pg_env.superuser() as db:
        db.execute("DROP SEQUENCE locked.root_seq")
    provider.revoke(make_target(), issued.handle)
    assert role_row(pg_env, issued.handle) is None


def test_revocation_fails_while_the_database_is_away_and_succeeds_when_it_is_back(
    pg_env: PgEnv, tmp_path: Path, tcp_proxy: Callable[[tuple[str, int]], TcpProxy]
) -> None:
    proxy = tcp_proxy((PG_HOST, PG_PORT))
    provider = create_provider(provider_context(tmp_path, {PG_ENV: pg_env.admin_dsn(port=proxy.port)}))
    target = make_target()
    request = issue_request(pg_role(pg_env.readonly), target)
    issued = provider.issue(request, provider.new_handle(request))
    assert issued.secret["port"] == proxy.port
    session = psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        dbname=pg_env.database,
        user=issued.handle,
        password=issued.secret["password"],
    )

    proxy.stop()
    for _ in range(2):
        with pytest.raises(ProviderError, match="cannot connect") as failure:
            provider.revoke(target, issued.handle)
        message = str(failure.value)
        assert "\n" not in message
        assert pg_env.admin_password not in message
        assert str(issued.secret["password"]) not in message
        assert failure.value.__cause__ is None
        assert failure.value.__suppress_context__
    assert provider.check(target).ok is False
    assert role_row(pg_env, issued.handle) is not None
    assert session.execute("SELECT 1").fetchone() == (1,)

    proxy.start()
    provider.revoke(target, issued.handle)
    assert role_row(pg_env, issued.handle) is None
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, f"environment variable {PG_ENV} is not set"),
        ({PG_ENV: "  "}, f"environment variable {PG_ENV} is empty"),
        ({PG_ENV: "host=127.0.0.1 password=hunter2-secret bogus"}, "is not a valid connection string"),
        ({PG_ENV: "postgress://admin:hunter2-secret@127.0.0.1/x"}, "is not a valid connection string"),
        ({PG_ENV: f"postgresql://nobody_zz:hunter2-secret@{PG_HOST}:{PG_PORT}/postgres"}, "cannot connect"),
        (
            {PG_ENV: f"postgresql://postgres:hunter2-secret@{PG_HOST}:{PG_PORT}/no_such_db_zz"},
            "cannot connect",
        ),
        ({PG_ENV: f"postgresql://postgres:hunter2-secret@{PG_HOST}:1/postgres"}, "cannot connect"),
    ],
)
def test_a_bad_admin_dsn_is_one_clear_line_without_the_secret(
    pg_env: PgEnv, tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    provider = create_provider(provider_context(tmp_path, environ))
    request = issue_request(pg_role(pg_env.readonly), make_target())
    handle = provider.new_handle(request)
    for attempt in (lambda: provider.issue(request, handle), lambda: provider.revoke(make_target(), handle)):
        with pytest.raises(ProviderError) as failure:
            attempt()
        message = str(failure.value)
        assert expected in message
        assert "orders-db" in message
        assert "hunter2" not in message
        assert "\n" not in message
    assert "hunter2" not in provider.check(make_target()).detail
    assert role_row(pg_env, handle) is None


@pytest.mark.parametrize(
    ("member_of", "expected"),
    [
        (("jg_no_such_role",), "role jg_no_such_role does not exist on target orders-db"),
        (("Read Only",), "role name 'Read Only' for target orders-db would need quoting"),
        (('ro"; DROP ROLE postgres; --',), "would need quoting"),
        (("postgres",), "role postgres on target orders-db has SUPERUSER; jitgate will not hand it out"),
    ],
)
def test_bad_member_of_is_refused_and_leaves_no_login(
    pg_env: PgEnv, provider: CredentialProvider, member_of: tuple[str, ...], expected: str
) -> None:
    request = issue_request(pg_role(pg_env.readonly, *member_of), make_target())
    handle = provider.new_handle(request)
    with pytest.raises(ProviderError) as failure:
        provider.issue(request, handle)
    assert str(failure.value) == expected or expected in str(failure.value)
    assert role_row(pg_env, handle) is None


def test_a_role_that_can_create_roles_is_not_handed_out(pg_env: PgEnv, provider: CredentialProvider) -> None:
    request = issue_request(pg_role(pg_env.admin), make_target())
    handle = provider.new_handle(request)
    with pytest.raises(ProviderError, match="has CREATEROLE; jitgate will not hand it out"):
        provider.issue(request, handle)
    assert role_row(pg_env, handle) is None


@pytest.mark.parametrize("handle", ["postgres", "jit_alice_123", "jit_alice_0123456789ab; DROP ROLE x", ""])
def test_only_jitgate_login_names_are_touched(
    provider: CredentialProvider, pg_env: PgEnv, handle: str
) -> None:
    with pytest.raises(ProviderError, match="not a login name jitgate creates"):
        provider.revoke(make_target(), handle)
    with pytest.raises(ProviderError, match="not a login name jitgate creates"):
        provider.issue(issue_request(pg_role(pg_env.readonly), make_target()), handle)


def test_revoking_a_login_that_never_existed_is_done(provider: CredentialProvider) -> None:
    provider.revoke(make_target(), "jit_ghost_0123456789ab")


def test_connection_limit_and_expired_grant(
    pg_env: PgEnv, provider: CredentialProvider, cleanup: list[tuple[Target, str]]
) -> None:
    issued = issue(provider, cleanup, make_target(), pg_env.readonly, connection_limit=2)
    row = role_row(pg_env, issued.handle)
    assert row is not None
    assert row[6] == 2
    assert issued.record["connection_limit"] == 2

    request = issue_request(pg_role(pg_env.readonly), make_target(), minutes=-1)
    with pytest.raises(ProviderError, match="already expired"):
        provider.issue(request, provider.new_handle(request))


def test_unknown_or_malformed_target_options_are_refused(provider: CredentialProvider, pg_env: PgEnv) -> None:
    request = issue_request(pg_role(pg_env.readonly), make_target())
    handle = provider.new_handle(request)
    for options, expected in [
        ({"reasign_to": "x"}, "unknown option(s) reasign_to"),
        ({"databases": "db1"}, "databases must be a list"),
        ({"reassign_to": "Some Owner"}, "would need quoting"),
        ({"connect_timeout": 0}, "connect_timeout"),
    ]:
        with pytest.raises(ProviderError) as failure:
            provider.revoke(make_target(**options), handle)
        assert expected in str(failure.value)


def test_health_check(pg_env: PgEnv, provider: CredentialProvider) -> None:
    health = provider.check(make_target())
    assert health.ok, health.detail
    assert pg_env.admin in health.detail


def test_no_secret_in_any_log_record_or_error(
    pg_env: PgEnv,
    provider: CredentialProvider,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    tcp_proxy: Callable[[tuple[str, int]], TcpProxy],
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = tcp_proxy((PG_HOST, PG_PORT))
    proxied = create_provider(provider_context(tmp_path, {PG_ENV: pg_env.admin_dsn(port=proxy.port)}))
    target = make_target(reassign_to=pg_env.owner)
    errors: list[str] = []

    request = issue_request(pg_role(pg_env.creator), target)
    issued = proxied.issue(request, proxied.new_handle(request))
    with user_connection(issued) as conn:
        conn.execute("CREATE TABLE work.logged (id int)")
    proxy.stop()
    with pytest.raises(ProviderError) as failure:
        proxied.revoke(target, issued.handle)
    errors.append(str(failure.value))
    proxy.start()
    proxied.revoke(target, issued.handle)
    bad = issue_request(pg_role(pg_env.readonly, "jg_missing"), target)
    with pytest.raises(ProviderError) as failure:
        provider.issue(bad, provider.new_handle(bad))
    errors.append(str(failure.value))

    texts = [*errors, *(record.getMessage() for record in caplog.records)]
    texts += [record.exc_text or "" for record in caplog.records]
    assert any(issued.handle in text for text in texts), "the provider should log what it does"
    for text in texts:
        assert str(issued.secret["password"]) not in text
        assert pg_env.admin_password not in text
    with pg_env.superuser() as db:
        db.execute("DROP TABLE work.logged")


def test_one_provider_serves_many_threads(pg_env: PgEnv, provider: CredentialProvider) -> None:
    target = make_target()

    def round_trip(n: int) -> str:
        request = issue_request(pg_role(pg_env.readonly), target, user=f"worker{n}")
        issued = provider.issue(request, provider.new_handle(request))
        with user_connection(issued) as conn:
            assert conn.execute("SELECT count(*) FROM app.orders").fetchone() == (2,)
        provider.revoke(target, issued.handle)
        return issued.handle

    with ThreadPoolExecutor(max_workers=4) as pool:
        handles = list(pool.map(round_trip, range(8)))
    assert len(set(handles)) == 8
    assert all(role_row(pg_env, handle) is None for handle in handles)
