"""Elevating an existing PostgreSQL login, against the real server with a CREATEROLE-only admin:
the roles work during the window and not after, no session keeps them, nothing unsafe is handed
out, no admin option is given, and memberships granted by someone else stay."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from dbkit import PgEnv, pg_provider, pg_target
from pgroles import PgRoles, ended, pg_roles, reads_orders
from psycopg import sql

from jitgate.errors import ElevationRefused
from jitgate.providers.postgres import PostgresProvider

pytestmark = pytest.mark.postgres
TARGET = pg_target()


@pytest.fixture
def provider(pg_env: PgEnv, tmp_path: Path) -> Iterator[PostgresProvider]:
    with pg_provider(pg_env, tmp_path) as made:
        yield made


@pytest.fixture
def roles(pg_env: PgEnv) -> Iterator[PgRoles]:
    with pg_roles(pg_env) as made:
        yield made


def test_the_login_may_do_the_elevated_thing_during_the_window_and_not_after(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    item, login = roles.role(reads_orders=True), roles.login()
    assert not reads_orders(roles.connect(login))

    assert provider.find_account(TARGET, login) == login
    assert provider.held(TARGET, login, (item,)) == frozenset()
    done = provider.elevate(TARGET, login, (item,))
    assert done == {"granted_by": roles.env.admin}
    assert provider.held(TARGET, login, (item,)) == {item}
    assert reads_orders(roles.connect(login))

    outcome = provider.withdraw(TARGET, login, (item,))
    assert outcome["revoked"] == [item]
    assert not reads_orders(roles.connect(login))
    assert roles.memberships(login) == []


def test_what_postgresql_itself_does_when_a_membership_is_revoked(pg_env: PgEnv, roles: PgRoles) -> None:
    """Why ``withdraw`` ends sessions: a bare REVOKE takes inherited privileges away at the next
    statement, but a session that ran SET ROLE keeps the role, and an open cursor keeps reading."""
    item, login = roles.role(reads_orders=True), roles.login()
    with psycopg.connect(pg_env.admin_dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(item), sql.Identifier(login)))
        inherits, sets_role, cursor = roles.connect(login), roles.connect(login), roles.connect(login)
        assert reads_orders(inherits)
        sets_role.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(item)))
        cursor.execute("DECLARE kept CURSOR WITH HOLD FOR SELECT id FROM app.orders ORDER BY id")
        prepared = roles.connect(login)
        prepared.execute("PREPARE count_orders AS SELECT count(*) FROM app.orders")

        admin.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(item), sql.Identifier(login)))

    assert not reads_orders(inherits)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        prepared.execute("EXECUTE count_orders")
    assert sets_role.execute("SELECT current_user, count(*) FROM app.orders GROUP BY 1").fetchone() == (
        item,
        2,
    )
    assert cursor.execute("FETCH ALL FROM kept").fetchall() == [(1,), (2,)]


def test_withdraw_ends_every_session_that_may_still_hold_the_role(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    item, login = roles.role(reads_orders=True), roles.login()
    before = roles.connect(login)  # opened before the window: it may SET ROLE during it
    provider.elevate(TARGET, login, (item,))
    inherits, sets_role, cursor = roles.connect(login), roles.connect(login), roles.connect(login)
    assert reads_orders(inherits)
    sets_role.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(item)))
    before.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(item)))
    cursor.execute("BEGIN; DECLARE open_one CURSOR FOR SELECT id FROM app.orders")

    outcome = provider.withdraw(TARGET, login, (item,))

    assert outcome == {"revoked": [item], "sessions_ended": 4}
    for session in (before, inherits, sets_role, cursor):
        assert ended(session)
    # The admin (CREATEROLE only) was a member of the login just for ending its sessions.
    assert login not in [role for role, *_ in roles.memberships(roles.env.admin)]
    after = roles.connect(login)
    assert not reads_orders(after)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        after.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(item)))


def test_elevate_and_withdraw_are_idempotent_and_a_login_gone_is_withdrawn(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    item, other, login = roles.role(reads_orders=True), roles.role(), roles.login()
    provider.elevate(TARGET, login, (item, other))
    assert provider.elevate(TARGET, login, (item, other))["already_member"] == sorted([item, other])
    assert [role for role, *_ in roles.memberships(login)] == sorted([item, other])

    assert provider.withdraw(TARGET, login, (item, other))["revoked"] == sorted([item, other])
    again = provider.withdraw(TARGET, login, (item, other))
    assert again == {"revoked": [], "sessions_ended": 0, "not_member": sorted([item, other])}

    provider.elevate(TARGET, login, (item,))
    with roles.env.superuser() as db:
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
    assert provider.withdraw(TARGET, login, (item,)) == {
        "account_gone": True,
        "revoked": [],
        "sessions_ended": 0,
    }


def test_no_admin_option_is_ever_granted(provider: PostgresProvider, roles: PgRoles) -> None:
    items, login = (roles.role(), roles.role()), roles.login()
    provider.elevate(TARGET, login, items)
    assert roles.memberships(login) == sorted((item, roles.env.admin, False) for item in items)
    session = roles.connect(login)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(items[0]), sql.Identifier(roles.env.owner))
        )


@pytest.mark.parametrize("power", ["SUPERUSER", "CREATEROLE", "BYPASSRLS", "REPLICATION"])
@pytest.mark.parametrize("through", ["itself", "a membership", "a membership without INHERIT"])
def test_a_role_with_special_powers_is_refused_and_nothing_is_granted(
    provider: PostgresProvider, roles: PgRoles, power: str, through: str
) -> None:
    powerful = roles.role(power)
    if through == "itself":
        unsafe, expected = powerful, f"has {power}"
    else:
        unsafe = roles.role("NOINHERIT" if "without" in through else "INHERIT", member_of=[powerful])
        expected = f"is a member of {powerful}, which has {power}"
    safe, login = roles.role(reads_orders=True), roles.login()
    with pytest.raises(ElevationRefused) as refused:
        provider.elevate(TARGET, login, (safe, unsafe))
    assert str(refused.value) == f"role {unsafe} on target orders-db {expected}; jitgate will not hand it out"
    assert roles.memberships(login) == []


def test_a_role_that_reaches_the_servers_files_is_refused(provider: PostgresProvider, roles: PgRoles) -> None:
    unsafe, login = roles.role(member_of=["pg_read_server_files"]), roles.login()
    with pytest.raises(ElevationRefused, match="is a member of pg_read_server_files, which gives access"):
        provider.elevate(TARGET, login, (unsafe,))
    with pytest.raises(ElevationRefused, match="gives access to the server's files"):
        provider.elevate(TARGET, login, ("pg_write_server_files",))
    assert roles.memberships(login) == []


def test_a_missing_role_is_refused(provider: PostgresProvider, roles: PgRoles) -> None:
    safe, login = roles.role(), roles.login()
    with pytest.raises(ElevationRefused, match="role jg_el_no_such_role does not exist on target orders-db"):
        provider.elevate(TARGET, login, (safe, "jg_el_no_such_role"))
    with pytest.raises(ElevationRefused, match="login jg_el_no_such_login does not exist"):
        provider.elevate(TARGET, "jg_el_no_such_login", (safe,))
    assert roles.memberships(login) == []


def test_a_login_is_not_made_a_member_of_itself(provider: PostgresProvider, roles: PgRoles) -> None:
    login = roles.login()
    with pytest.raises(ElevationRefused, match=f'role "{login}" is a member of role "{login}"'):
        provider.elevate(TARGET, login, (login,))
    assert provider.elevate(TARGET, login, (roles.role(),))  # the connection is fine afterwards


def test_find_account_names_existing_logins_only_and_refuses_those_never_elevated(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    assert provider.find_account(TARGET, "jg_el_nobody_here") is None
    assert provider.find_account(TARGET, roles.role()) is None  # NOLOGIN is no login
    refused = {
        roles.env.admin: "is the admin role jitgate works as",
        roles.login("SUPERUSER"): "is a superuser",
        "jit_alice_0123456789ab": "is one jitgate creates for a grant",
    }
    shared = roles.login()
    member = roles.login(member_of=[shared])
    refused[shared] = f"has members ({member}), who would be elevated too"
    for account, why in refused.items():
        with pytest.raises(ElevationRefused, match=re.escape(why)):
            provider.find_account(TARGET, account)
        with pytest.raises(ElevationRefused, match=re.escape(why)):
            provider.elevate(TARGET, account, (roles.role(),))


def test_held_counts_only_direct_memberships(provider: PostgresProvider, roles: PgRoles) -> None:
    item, other = roles.role(), roles.role()
    group = roles.role(member_of=[item])
    login = roles.login(member_of=[group, other])
    assert provider.held(TARGET, login, (item, other, group)) == {other, group}


def test_a_membership_someone_else_granted_stays_and_its_sessions_live_on(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    item, login = roles.role(reads_orders=True), roles.login()
    roles.grant(item, login)
    session = roles.connect(login)
    session.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(item)))

    outcome = provider.withdraw(TARGET, login, (item,))

    assert outcome == {"revoked": [], "sessions_ended": 0, "granted_by_others": {item: "postgres"}}
    assert roles.memberships(login) == [(item, "postgres", False)]
    assert reads_orders(session)


def test_a_login_that_reaches_the_role_another_way_keeps_its_sessions(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    item = roles.role(reads_orders=True)
    login = roles.login(member_of=[roles.role(member_of=[item])])
    provider.elevate(TARGET, login, (item,))
    session = roles.connect(login)
    assert provider.withdraw(TARGET, login, (item,)) == {"revoked": [item], "sessions_ended": 0}
    assert reads_orders(session)


def test_concurrent_grants_and_revokes_of_one_membership_all_succeed(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    """Two brokers (or a broker and a person) at once: the server fails all but one of the
    statements; the provider tries again and finds the work done."""
    item, login = roles.role(), roles.login()
    assert at_once(4, lambda: provider.elevate(TARGET, login, (item,))) == []
    assert roles.memberships(login) == [(item, roles.env.admin, False)]
    assert at_once(4, lambda: provider.withdraw(TARGET, login, (item,))) == []
    assert roles.memberships(login) == []


def at_once(count: int, work: Callable[[], object]) -> list[Exception]:
    """Run ``work`` on ``count`` threads released together; returns what they raised."""
    start, failures = threading.Barrier(count), []

    def run() -> None:
        start.wait()
        try:
            work()
        except Exception as exc:  # collected for the caller's assertion
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures
