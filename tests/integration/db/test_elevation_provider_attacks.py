"""What an elevated PostgreSQL login might try during its window to keep access afterwards, against
the real server: each way is refused at elevation or undone at withdrawal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbkit import PgEnv, pg_provider, pg_target
from pgroles import PgRoles, pg_roles, reads_orders
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


def test_a_role_holding_admin_option_on_another_role_is_not_handed_out(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    """With the role, the login could grant itself the other role for good."""
    kept = roles.role(reads_orders=True)
    item, login = roles.role(), roles.login()
    with roles.env.superuser() as db:
        db.execute(
            sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(kept), sql.Identifier(item))
        )

    with pytest.raises(ElevationRefused, match=f"role {item} .*admin option on {kept}"):
        provider.elevate(TARGET, login, (item,))
    assert roles.memberships(login) == []


def test_admin_option_reached_through_a_chain_of_roles_is_refused_too(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    kept = roles.role(reads_orders=True)
    middle = roles.role()
    with roles.env.superuser() as db:
        db.execute(
            sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(kept), sql.Identifier(middle))
        )
    item, login = roles.role(member_of=[middle]), roles.login()

    with pytest.raises(ElevationRefused, match=f"role {item} .*admin option on {kept}"):
        provider.elevate(TARGET, login, (item,))


def test_a_chain_to_a_server_file_role_is_refused_however_deep(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    deep = roles.role(member_of=["pg_execute_server_program"])
    item, login = roles.role(member_of=[roles.role(member_of=[deep])]), roles.login()

    with pytest.raises(ElevationRefused, match="pg_execute_server_program"):
        provider.elevate(TARGET, login, (item,))


def test_a_noinherit_membership_in_a_superuser_is_still_refused(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    """NOINHERIT hides the privileges from pg_has_role's USAGE, not SET ROLE: MEMBER is what counts."""
    item, login = roles.role("NOINHERIT", member_of=[roles.role("SUPERUSER")]), roles.login()

    with pytest.raises(ElevationRefused, match="SUPERUSER"):
        provider.elevate(TARGET, login, (item,))


def test_the_elevated_login_cannot_hand_the_role_on_to_another_account(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    item, login, accomplice = roles.role(reads_orders=True), roles.login(), roles.login()
    provider.elevate(TARGET, login, (item,))
    session = roles.connect(login)
    for statement in ("GRANT {} TO {}", "GRANT {} TO {} WITH ADMIN OPTION"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            session.execute(sql.SQL(statement).format(sql.Identifier(item), sql.Identifier(accomplice)))
    session.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(item)))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        session.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(item), sql.Identifier(accomplice)))

    provider.withdraw(TARGET, login, (item,))
    assert roles.memberships(accomplice) == []
    assert roles.memberships(login) == []


def test_what_a_role_owning_objects_grants_the_login_during_the_window_is_known_to_stay(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    """A role that owns a table can grant on it to anyone, the login included, and such a grant is
    the role's own, not jitgate's: it outlives the window (docs/security.md, known limits)."""
    item, login = roles.role(), roles.login()
    with roles.env.superuser() as db:
        db.execute(
            sql.SQL("GRANT USAGE ON SCHEMA app TO {}, {}").format(sql.Identifier(item), sql.Identifier(login))
        )
        db.execute(sql.SQL("ALTER TABLE app.orders OWNER TO {}").format(sql.Identifier(item)))
    try:
        provider.elevate(TARGET, login, (item,))
        session = roles.connect(login)
        session.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(item)))
        session.execute(sql.SQL("GRANT SELECT ON app.orders TO {}").format(sql.Identifier(login)))
        provider.withdraw(TARGET, login, (item,))
        assert reads_orders(roles.connect(login))
    finally:
        with roles.env.superuser() as db:
            db.execute(sql.SQL("ALTER TABLE app.orders OWNER TO {}").format(sql.Identifier(roles.env.owner)))
            db.execute(sql.SQL("REVOKE ALL ON app.orders FROM {}").format(sql.Identifier(login)))


def test_a_security_definer_function_the_role_creates_during_the_window_is_known_to_stay(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    """A role that may create objects can leave one that runs as itself for anyone (docs/security.md,
    known limits): hand out such roles only to those trusted to keep what they could do with it."""
    item, login = roles.role(reads_orders=True), roles.login()
    with roles.env.superuser() as db:
        db.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA app TO {}").format(sql.Identifier(item)))
        db.execute(sql.SQL("GRANT USAGE ON SCHEMA app TO {}").format(sql.Identifier(login)))
    provider.elevate(TARGET, login, (item,))
    session = roles.connect(login)
    session.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(item)))
    session.execute(
        "CREATE FUNCTION app.jg_kept() RETURNS bigint SECURITY DEFINER LANGUAGE sql"
        " AS 'SELECT count(*) FROM app.orders'"
    )
    try:
        provider.withdraw(TARGET, login, (item,))
        after = roles.connect(login)
        assert not reads_orders(after)
        assert after.execute("SELECT app.jg_kept()").fetchone() == (2,)
    finally:
        with roles.env.superuser() as db:
            db.execute("DROP FUNCTION app.jg_kept()")


def test_a_name_longer_than_postgresql_keeps_is_not_cut_down_to_another_login(
    provider: PostgresProvider, roles: PgRoles
) -> None:
    """PostgreSQL cuts names to 63 bytes, in a literal compared with a name as in an identifier."""
    victim = roles.login()
    victim = victim + "v" * (63 - len(victim))
    with roles.env.superuser() as db:
        db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(victim)))
    roles.made.append(victim)
    item, longer = roles.role(reads_orders=True), victim + ".attacker"

    assert provider.find_account(TARGET, victim) == victim
    assert provider.find_account(TARGET, longer) is None
    with pytest.raises(ElevationRefused, match="63"):
        provider.elevate(TARGET, longer, (item,))
    assert roles.memberships(victim) == []
    provider.elevate(TARGET, victim, (item,))
    session = roles.connect(victim)
    assert provider.held(TARGET, longer, (item,)) == frozenset()
    assert provider.withdraw(TARGET, longer, (item,))["account_gone"]
    assert roles.memberships(victim) != []  # the victim's own grant and session are untouched
    assert reads_orders(session)
