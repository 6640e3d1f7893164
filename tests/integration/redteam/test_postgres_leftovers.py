"""Attacks on what a revoked PostgreSQL login leaves to a ``reassign_to`` owner, on the real server.

Routines and views are neutered before they are reassigned, but a table can carry code of its own
that runs as the table's owner: a rule. Its action is checked with the privileges of whoever owns
the table, so once the table belongs to the ``reassign_to`` owner (which, on a managed database,
often owns the application's tables too), any later login allowed to write the table runs the
rule as that owner.
"""

from __future__ import annotations

import contextlib
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


@pytest.fixture
def provider(pg_env: PgEnv, tmp_path: Path) -> Iterator[PostgresProvider]:
    with pg_provider(pg_env, tmp_path) as made:
        yield made


@pytest.fixture
def victim(pg_env: PgEnv) -> Iterator[str]:
    """An application table of the owner role, which the logins may read but not change."""
    name = f"app.victim_{pg_env.suffix}"
    with pg_env.superuser() as db:
        db.execute(
            sql.SQL(
                "SET ROLE {owner}; CREATE TABLE {t} (id int); INSERT INTO {t} VALUES (1), (2);"
                " GRANT SELECT ON {t} TO {rw}; RESET ROLE"
            ).format(owner=ident(pg_env.owner), t=sql.SQL(name), rw=ident(pg_env.creator))
        )
    yield name
    with pg_env.superuser() as db:
        db.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.SQL(name)))
        kind = db.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('work.inbox')").fetchone()
        if kind is not None:
            db.execute(f"DROP {'VIEW' if kind[0] == 'v' else 'TABLE'} work.inbox CASCADE")


@pytest.fixture
def logins(provider: PostgresProvider) -> Iterator[list[tuple[Target, str]]]:
    handles: list[tuple[Target, str]] = []
    yield handles
    for target, handle in handles:
        provider.revoke(target, handle)


def login_as(
    provider: PostgresProvider, handles: list[tuple[Target, str]], target: Target, role: str
) -> Issued:
    request = issue_request(pg_role(role), target)
    handle = provider.new_handle(request)
    handles.append((target, handle))
    return provider.issue(request, handle)


def connect(issued: Issued) -> psycopg.Connection[Any]:
    return psycopg.connect(str(issued.secret["dsn"]), autocommit=True)


def rows_of(pg_env: PgEnv, table: str) -> int:
    with pg_env.superuser() as db:
        row = db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(table))).fetchone()
    assert row is not None
    return int(row[0])


PLANTED = {
    "table": "CREATE TABLE work.inbox (x int)",
    "view": "CREATE VIEW work.inbox AS SELECT 1 AS x",
}


@pytest.mark.parametrize("relation", sorted(PLANTED))
def test_a_rule_on_a_reassigned_relation_never_acts_with_its_new_owners_privileges(
    pg_env: PgEnv, provider: PostgresProvider, logins: list[tuple[Target, str]], victim: str, relation: str
) -> None:
    target = make_target(reassign_to=pg_env.owner)
    planter = login_as(provider, logins, target, pg_env.creator)
    with connect(planter) as conn:
        conn.execute(PLANTED[relation])
        conn.execute("GRANT INSERT ON work.inbox TO PUBLIC")
        conn.execute(
            sql.SQL("CREATE RULE wreck AS ON INSERT TO work.inbox DO INSTEAD DELETE FROM {}").format(
                sql.SQL(victim)
            )
        )
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("INSERT INTO work.inbox VALUES (1)")  # as its own owner: no such power

    assert provider.revoke(target, planter.handle)["objects"] == "reassigned"

    later = login_as(provider, logins, make_target(), pg_env.creator)
    # Refused, or the view is no longer writable: either way nothing ran as the owner.
    refused = (pg_errors.InsufficientPrivilege, pg_errors.ObjectNotInPrerequisiteState)
    with connect(later) as conn, contextlib.suppress(*refused):
        conn.execute("INSERT INTO work.inbox VALUES (2)")
    assert rows_of(pg_env, victim) == 2


# An index expression runs whenever the table is analyzed or reindexed, and PostgreSQL runs that
# maintenance as the table's owner. The function is declared IMMUTABLE (PostgreSQL takes the
# author's word) and calls a volatile one that writes; while the login owns the table it only
# hurts itself (the error is swallowed so that the index can be built at all).
INDEX_PAYLOAD = """
CREATE FUNCTION work.wreck() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN DELETE FROM {victim}; RETURN 1; EXCEPTION WHEN insufficient_privilege THEN RETURN 0; END $$;
CREATE FUNCTION work.key_of(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN x + work.wreck(); END $$;
CREATE TABLE work.inbox (x int);
INSERT INTO work.inbox VALUES (1);
CREATE INDEX inbox_key ON work.inbox (work.key_of(x));
"""


@pytest.fixture
def no_payload(pg_env: PgEnv) -> Iterator[None]:
    yield
    with pg_env.superuser() as db:
        db.execute("DROP FUNCTION IF EXISTS work.key_of(int), work.wreck() CASCADE")


def test_maintenance_of_a_reassigned_table_never_runs_the_logins_code_as_its_new_owner(
    pg_env: PgEnv, provider: PostgresProvider, logins: list[tuple[Target, str]], victim: str, no_payload: None
) -> None:
    target = make_target(reassign_to=pg_env.owner)
    planter = login_as(provider, logins, target, pg_env.creator)
    with connect(planter) as conn:
        conn.execute(INDEX_PAYLOAD.format(victim=victim))
    assert rows_of(pg_env, victim) == 2

    assert provider.revoke(target, planter.handle)["objects"] == "reassigned"
    with pg_env.superuser() as db:
        db.execute("ANALYZE work.inbox")  # what autovacuum does by itself once the table has changed

    assert rows_of(pg_env, victim) == 2
