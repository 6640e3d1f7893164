"""Real PostgreSQL and MariaDB for the database providers: a private database and admin per run.

Each session creates its own databases, group roles and a non-superuser admin (PostgreSQL:
``CREATEROLE`` only, as managed databases give; MariaDB: ``CREATE USER`` + ``CONNECTION ADMIN``)
and removes them afterwards, so runs on the shared servers never see each other. Under ``CI=true``
a server that cannot be reached fails the tests instead of skipping them.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
from psycopg import sql

# tests/ has no packages; make the helpers next to this file importable as ``dbkit``.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from dbkit import (  # noqa: E402
    MARIADB_HOST,
    MARIADB_PORT,
    PG_HOST,
    PG_PORT,
    MariadbEnv,
    PgEnv,
    TcpProxy,
    ident,
    mariadb_root,
    pg_superuser,
    unreachable,
)


@pytest.fixture(scope="session")
def pg_env() -> Iterator[PgEnv]:
    try:
        root = pg_superuser()
    except psycopg.OperationalError as exc:
        unreachable(f"PostgreSQL at {PG_HOST}:{PG_PORT}", exc)
    suffix = secrets.token_hex(4)
    env = PgEnv(
        suffix=suffix,
        database=f"jg_test_{suffix}",
        other_database=f"jg_test_{suffix}_b",
        admin=f"jg_admin_{suffix}",
        admin_password=f"adm-{secrets.token_urlsafe(12)}",
        readonly=f"jg_ro_{suffix}",
        creator=f"jg_rw_{suffix}",
        owner=f"jg_owner_{suffix}",
    )
    with root:
        try:
            root.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                    ident(env.admin), sql.Literal(env.admin_password)
                )
            )
            for group in (env.readonly, env.creator, env.owner):
                root.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(group)))
            # The admin must be a member of the role that receives reassigned objects.
            root.execute(sql.SQL("GRANT {} TO {}").format(ident(env.owner), ident(env.admin)))
            for database in (env.database, env.other_database):
                root.execute(sql.SQL("CREATE DATABASE {}").format(ident(database)))
                root.execute(
                    sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(ident(database), ident(env.admin))
                )
                with env.superuser(database) as db:
                    db.execute(
                        sql.SQL(
                            "CREATE SCHEMA work; GRANT USAGE, CREATE ON SCHEMA work TO {creator};"
                            " GRANT USAGE, CREATE ON SCHEMA work TO {owner};"
                        ).format(creator=ident(env.creator), owner=ident(env.owner))
                    )
            with env.superuser() as db:
                # The application's objects belong to an owner role, as on a managed database; the
                # admin is a member of it (it must be, to reassign to it and to revoke its grants).
                db.execute(
                    sql.SQL(
                        "CREATE SCHEMA app AUTHORIZATION {owner}; CREATE SCHEMA locked; SET ROLE {owner};"
                        " CREATE TABLE app.orders (id int PRIMARY KEY, item text);"
                        " INSERT INTO app.orders VALUES (1, 'book'), (2, 'pen');"
                        " CREATE SEQUENCE app.ticket_seq;"
                        " GRANT USAGE ON SCHEMA app TO {ro}, {rw}; GRANT SELECT ON app.orders TO {ro}, {rw};"
                        " RESET ROLE"
                    ).format(owner=ident(env.owner), ro=ident(env.readonly), rw=ident(env.creator))
                )
            yield env
        finally:
            for database in (env.database, env.other_database):
                root.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(database)))
            groups = [env.readonly, env.creator, env.owner]
            leftovers = root.execute(
                "SELECT DISTINCT m.rolname FROM pg_auth_members a"
                " JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member"
                " WHERE g.rolname = ANY(%s) AND m.rolname LIKE 'jit\\_%%'",
                [groups],
            ).fetchall()
            for (name,) in leftovers:
                root.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(name)))
            for name in (env.admin, *groups):
                root.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(name)))


@pytest.fixture(scope="session")
def mariadb_env() -> Iterator[MariadbEnv]:
    try:
        root = mariadb_root()
    except pymysql.MySQLError as exc:
        unreachable(f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT}", exc)
    suffix = secrets.token_hex(4)
    env = MariadbEnv(
        suffix=suffix,
        database=f"jg_test_{suffix}",
        admin=f"jg_admin_{suffix}",
        admin_password=f"adm-{secrets.token_urlsafe(12)}",
        readonly=f"jg_ro_{suffix}",
    )
    db, admin = f"`{env.database}`", f"`{env.admin}`@'%'"
    with root, root.cursor() as cur:
        try:
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"CREATE TABLE {db}.orders (id int PRIMARY KEY, item text)")
            cur.execute(f"INSERT INTO {db}.orders VALUES (1, 'book'), (2, 'pen')")  # noqa: S608 - generated name
            cur.execute(f"CREATE ROLE `{env.readonly}`")
            cur.execute(f"GRANT SELECT ON {db}.orders TO `{env.readonly}`")
            cur.execute(f"CREATE USER `{env.admin}`@'%%' IDENTIFIED BY %s", (env.admin_password,))
            cur.execute(f"GRANT CREATE USER, CONNECTION ADMIN ON *.* TO {admin}")
            cur.execute(f"GRANT ALL ON {db}.* TO {admin} WITH GRANT OPTION")
            cur.execute(f"GRANT `{env.readonly}` TO {admin} WITH ADMIN OPTION")
            yield env
        finally:
            cur.execute(
                "SELECT User, Host FROM mysql.roles_mapping WHERE Role = %s AND User LIKE 'jit\\_%%'"
                " UNION SELECT User, Host FROM mysql.db WHERE Db = %s AND User LIKE 'jit\\_%%'"
                " UNION SELECT User, Host FROM mysql.tables_priv WHERE Db = %s AND User LIKE 'jit\\_%%'",
                (env.readonly, env.database, env.database),
            )
            for user, host in cur.fetchall():
                cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
            cur.execute(f"DROP USER IF EXISTS {admin}")
            cur.execute(f"DROP ROLE IF EXISTS `{env.readonly}`")


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[tuple[str, int]], TcpProxy]]:
    proxies: list[TcpProxy] = []

    def make(upstream: tuple[str, int]) -> TcpProxy:
        proxy = TcpProxy(upstream)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
