"""What a temporary PostgreSQL login created must never keep running with more power than it had.

The attack: a login that may create objects plants code that runs as the object's owner (a
``SECURITY DEFINER`` function, a view) or as whoever touches someone else's table (a trigger).
Were its objects reassigned to the admin at revocation, the next ordinary login calling the
function would act as the admin and could leave a standing role with admin power behind. So what
the login owned is dropped in every database it left something in, and only a configured owner
that the broker finds harmless at revocation time may receive it, neutered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbkit import PgEnv, ident, issue_request, pg_provider, pg_role
from dbkit import pg_target as make_target
from psycopg import errors as pg_errors
from psycopg import sql

from jitgate.policy.model import Target
from jitgate.providers.base import Issued
from jitgate.providers.postgres import PostgresProvider

pytestmark = pytest.mark.postgres

BACKDOOR = """
CREATE FUNCTION work.backdoor() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    EXECUTE format('CREATE ROLE %I LOGIN CREATEROLE PASSWORD %L', {name}, 'standing');
    RETURN current_user;
END $$
"""


@pytest.fixture
def provider(pg_env: PgEnv, tmp_path: Path) -> Iterator[PostgresProvider]:
    with pg_provider(pg_env, tmp_path) as made:
        yield made


@pytest.fixture(autouse=True)
def empty_work_schema(pg_env: PgEnv) -> Iterator[None]:
    """Whatever a test left in ``work`` (a failing one, say) is gone before the next one looks."""
    yield
    for database in (pg_env.database, pg_env.other_database):
        with pg_env.superuser(database) as db:
            db.execute(
                "DO $$ DECLARE r record; BEGIN"
                " FOR r IN SELECT oid::regclass AS name FROM pg_class"
                "  WHERE relnamespace = 'work'::regnamespace AND relkind IN ('r', 'v', 'm') LOOP"
                "  EXECUTE format('DROP %s IF EXISTS %s CASCADE', CASE (SELECT relkind FROM pg_class"
                "   WHERE oid = r.name) WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'"
                "   ELSE 'TABLE' END, r.name); END LOOP;"
                " FOR r IN SELECT oid::regprocedure AS name FROM pg_proc"
                "  WHERE pronamespace = 'work'::regnamespace LOOP"
                "  EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.name); END LOOP; END $$"
            )


@pytest.fixture
def backdoor(pg_env: PgEnv) -> Iterator[str]:
    """The name of the standing role the planted function would create; removed afterwards."""
    name = f"jg_backdoor_{pg_env.suffix}"
    yield name
    with pg_env.superuser() as db:
        db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(name)))


@pytest.fixture
def logins(pg_env: PgEnv, provider: PostgresProvider) -> Iterator[list[str]]:
    """Logins a test issued on the default target; revoked at the end even when it fails half-way."""
    handles: list[str] = []
    yield handles
    for handle in handles:
        provider.revoke(make_target(), handle)


def login_as(provider: PostgresProvider, handles: list[str], target: Target, *member_of: str) -> Issued:
    request = issue_request(pg_role(*member_of), target)
    handle = provider.new_handle(request)
    handles.append(handle)
    return provider.issue(request, handle)


def connect(issued: Issued, dbname: str | None = None) -> psycopg.Connection[Any]:
    extra = {"dbname": dbname} if dbname else {}
    return psycopg.connect(str(issued.secret["dsn"]), autocommit=True, **extra)


def plant_backdoor(issued: Issued, backdoor: str) -> None:
    with connect(issued) as conn:
        conn.execute(BACKDOOR.format(name=sql.Literal(backdoor).as_string(conn)))


def role_exists(env: PgEnv, name: str) -> bool:
    with env.superuser() as db:
        return db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is not None


def owned_in_work(env: PgEnv, database: str | None = None) -> list[tuple[str, str]]:
    with env.superuser(database) as db:
        rows = db.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
            " WHERE c.relnamespace = 'work'::regnamespace"
            " UNION ALL SELECT p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p"
            " WHERE p.pronamespace = 'work'::regnamespace ORDER BY 1"
        ).fetchall()
    return [(str(name), str(owner)) for name, owner in rows]


def test_a_function_planted_by_a_revoked_login_gives_no_later_login_admin_power(
    pg_env: PgEnv, provider: PostgresProvider, logins: list[str], backdoor: str
) -> None:
    planter = login_as(provider, logins, make_target(), pg_env.creator)
    plant_backdoor(planter, backdoor)
    with connect(planter) as conn, pytest.raises(pg_errors.InsufficientPrivilege):
        conn.execute("SELECT work.backdoor()")  # as its own owner the login has no such power

    provider.revoke(make_target(), planter.handle)

    later = login_as(provider, logins, make_target(), pg_env.creator)
    with connect(later) as conn, pytest.raises(pg_errors.UndefinedFunction):
        conn.execute("SELECT work.backdoor()")
    assert not role_exists(pg_env, backdoor)
    assert owned_in_work(pg_env) == []


def test_triggers_views_default_privileges_and_other_databases_go_with_the_login(
    pg_env: PgEnv, provider: PostgresProvider, logins: list[str]
) -> None:
    with pg_env.superuser() as db:
        db.execute(
            sql.SQL("SET ROLE {}; GRANT TRIGGER ON app.orders TO {}; RESET ROLE").format(
                ident(pg_env.owner), ident(pg_env.creator)
            )
        )
    try:
        planter = login_as(provider, logins, make_target(), pg_env.creator)
        with connect(planter) as conn:
            # Runs as whoever writes app.orders, the table's owner included.
            conn.execute(
                "CREATE FUNCTION work.spy() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'spied on %', current_user; END $$"
            )
            conn.execute(
                "CREATE TRIGGER spy BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION work.spy()"
            )
            conn.execute("CREATE VIEW work.peek AS SELECT * FROM app.orders")
            conn.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA work GRANT ALL ON TABLES TO PUBLIC")
        with connect(planter, pg_env.other_database) as conn:
            conn.execute("CREATE TABLE work.left_behind (id int)")

        outcome = provider.revoke(make_target(), planter.handle)

        assert outcome == {
            "objects": "dropped",
            "databases": sorted([pg_env.database, pg_env.other_database]),
        }
        with pg_env.superuser() as db:
            assert (
                db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'app.orders'::regclass").fetchall()
                == []
            )
            db.execute(
                sql.SQL("SET ROLE {}; INSERT INTO app.orders VALUES (99, 'probe')").format(
                    ident(pg_env.owner)
                )
            )
            db.execute("DELETE FROM app.orders WHERE id = 99")
            assert db.execute("SELECT count(*) FROM pg_default_acl").fetchone() == (0,)
        assert owned_in_work(pg_env) == []
        assert ("left_behind", planter.handle) not in owned_in_work(pg_env, pg_env.other_database)
    finally:
        with pg_env.superuser() as db:
            db.execute(
                sql.SQL("SET ROLE {}; REVOKE TRIGGER ON app.orders FROM {}; RESET ROLE").format(
                    ident(pg_env.owner), ident(pg_env.creator)
                )
            )


def test_objects_reassigned_to_a_harmless_owner_cannot_run_as_that_owner(
    pg_env: PgEnv, provider: PostgresProvider, logins: list[str], backdoor: str
) -> None:
    target = make_target(reassign_to=pg_env.owner)
    assert provider.check(target).ok
    planter = login_as(provider, logins, target, pg_env.creator)
    plant_backdoor(planter, backdoor)
    with connect(planter) as conn:
        conn.execute("CREATE TABLE work.kept (id int)")
        conn.execute("INSERT INTO work.kept VALUES (1)")
        conn.execute("CREATE VIEW work.peek AS SELECT * FROM app.orders")
        conn.execute("CREATE PROCEDURE work.chore() LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'")
        conn.execute(f"GRANT SELECT ON work.peek TO {pg_env.readonly}")

    outcome = provider.revoke(target, planter.handle)

    assert outcome == {"objects": "reassigned", "reassign_to": pg_env.owner, "databases": [pg_env.database]}
    # Data is handed on; code never is: the routines are gone, whatever their SECURITY setting.
    assert owned_in_work(pg_env) == [("kept", pg_env.owner), ("peek", pg_env.owner)]
    with pg_env.superuser() as db:
        routines = db.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'work'::regnamespace ORDER BY 1"
        ).fetchall()
        assert routines == []
        assert db.execute("SELECT reloptions FROM pg_class WHERE oid = 'work.peek'::regclass").fetchone() == (
            ["security_invoker=true"],
        )
        assert db.execute("SELECT count(*) FROM work.kept").fetchone() == (1,)
    later = login_as(provider, logins, make_target(), pg_env.creator)
    with connect(later) as conn, pytest.raises(pg_errors.UndefinedFunction):
        conn.execute("SELECT work.backdoor()")
    assert not role_exists(pg_env, backdoor)


@pytest.fixture
def risky_owners(pg_env: PgEnv) -> Iterator[dict[str, str]]:
    """Would-be owners each of which reaches power: directly, or through a membership without INHERIT."""
    maker = f"jg_maker_{pg_env.suffix}"
    names = {
        "bypasses": f"jg_bypass_{pg_env.suffix}",
        "replicates": f"jg_repl_{pg_env.suffix}",
        "inside_createrole": f"jg_inner_{pg_env.suffix}",
        "reads_everything": f"jg_reader_{pg_env.suffix}",
    }
    made = [maker, *names.values()]
    try:
        with pg_env.superuser() as db:
            db.execute(sql.SQL("CREATE ROLE {} NOLOGIN CREATEROLE").format(ident(maker)))
            db.execute(sql.SQL("CREATE ROLE {} NOLOGIN BYPASSRLS").format(ident(names["bypasses"])))
            db.execute(sql.SQL("CREATE ROLE {} NOLOGIN REPLICATION").format(ident(names["replicates"])))
            db.execute(
                sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT IN ROLE {}").format(
                    ident(names["inside_createrole"]), ident(maker)
                )
            )
            db.execute(
                sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE pg_read_all_data").format(
                    ident(names["reads_everything"])
                )
            )
            for name in names.values():
                db.execute(sql.SQL("GRANT {} TO {}").format(ident(name), ident(pg_env.admin)))
        yield {**names, "admin": pg_env.admin, "maker": maker}
    finally:
        with pg_env.superuser() as db:
            for name in made:
                db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(name)))


@pytest.mark.parametrize(
    ("owner", "why"),
    [
        ("admin", "is the admin role"),
        ("bypasses", "has BYPASSRLS"),
        ("replicates", "has REPLICATION"),
        ("inside_createrole", "is a member of {maker}, which has CREATEROLE"),
        ("reads_everything", "is a member of pg_read_all_data, which reaches the whole server"),
    ],
)
def test_an_owner_with_power_found_at_revocation_gets_nothing_and_the_objects_are_dropped(  # noqa: PLR0917 - fixtures
    pg_env: PgEnv,
    provider: PostgresProvider,
    logins: list[str],
    backdoor: str,
    risky_owners: dict[str, str],
    owner: str,
    why: str,
) -> None:
    name = risky_owners[owner]
    target = make_target(reassign_to=name)
    assert provider.validate(pg_role(pg_env.creator), target) == []  # nothing to see without a server
    planter = login_as(provider, logins, target, pg_env.creator)
    plant_backdoor(planter, backdoor)
    health = provider.check(target)
    refusal = f"reassign_to role {name} {why.format(maker=risky_owners['maker'])}"
    assert not health.ok
    assert refusal in health.detail

    outcome = provider.revoke(target, planter.handle)

    assert outcome == {
        "objects": "dropped",
        "reassign_to": name,
        "reassign_refused": refusal,
        "databases": [pg_env.database],
    }
    assert owned_in_work(pg_env) == []
    later = login_as(provider, logins, make_target(), pg_env.creator)
    with connect(later) as conn, pytest.raises(pg_errors.UndefinedFunction):
        conn.execute("SELECT work.backdoor()")
    assert not role_exists(pg_env, backdoor)


def test_a_missing_owner_or_one_the_admin_cannot_act_for_gets_nothing(
    pg_env: PgEnv, provider: PostgresProvider, logins: list[str]
) -> None:
    stranger = f"jg_stranger_{pg_env.suffix}"
    with pg_env.superuser() as db:
        db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(stranger)))
    try:
        for owner, refusal in [
            (f"jg_nobody_{pg_env.suffix}", "does not exist"),
            (stranger, ": the admin lacks its privileges"),
        ]:
            target = make_target(reassign_to=owner)
            planter = login_as(provider, logins, target, pg_env.creator)
            with connect(planter) as conn:
                conn.execute("CREATE TABLE work.scratch (id int)")
            outcome = provider.revoke(target, planter.handle)
            assert outcome is not None
            assert outcome["objects"] == "dropped"
            assert str(outcome["reassign_refused"]).endswith(refusal)
            assert owned_in_work(pg_env) == []
    finally:
        with pg_env.superuser() as db:
            db.execute(sql.SQL("DROP ROLE {}").format(ident(stranger)))


@pytest.mark.parametrize("owner", ["postgres", "pg_write_all_data", "pg_database_owner"])
def test_a_built_in_role_as_owner_is_refused_when_the_policy_is_checked(owner: str) -> None:
    problems = PostgresProvider({}).validate(pg_role("readers"), make_target(reassign_to=owner))
    assert problems == [
        f"postgres target orders-db: reassign_to {owner} is a built-in role; name a role with no special"
        " powers that exists only to own what logins leave behind"
    ]
