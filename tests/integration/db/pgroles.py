"""Roles and logins for the PostgreSQL elevation tests: unique names per test, dropped afterwards,
and the catalog and sessions read back as a superuser sees them."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from dbkit import PG_HOST, PG_PORT, PgEnv, ident
from psycopg import sql

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass
class PgRoles:
    env: PgEnv
    made: list[str] = field(default_factory=list)
    sessions: list[Connection] = field(default_factory=list)

    def role(self, *attributes: str, member_of: Sequence[str] = (), reads_orders: bool = False) -> str:
        """A NOLOGIN role (with ``attributes`` such as ``BYPASSRLS``), optionally a member of
        ``member_of`` and allowed to read ``app.orders``."""
        return self._make("jg_el_role", ("NOLOGIN", *attributes), member_of, reads_orders)

    def login(self, *attributes: str, member_of: Sequence[str] = ()) -> str:
        """A LOGIN role, as a person's own login would be (trust authentication here)."""
        return self._make("jg_el_login", ("LOGIN", *attributes), member_of, reads_orders=False)

    def _make(
        self, prefix: str, attributes: Sequence[str], member_of: Sequence[str], reads_orders: bool
    ) -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        statement = sql.SQL("CREATE ROLE {} {}").format(ident(name), sql.SQL(" ".join(attributes)))
        if member_of:
            statement += sql.SQL(" IN ROLE {}").format(sql.SQL(", ").join(ident(r) for r in member_of))
        with self.env.superuser() as db:
            db.execute(statement)
            self.made.append(name)
            if reads_orders:
                db.execute(
                    sql.SQL("GRANT USAGE ON SCHEMA app TO {0}; GRANT SELECT ON app.orders TO {0}").format(
                        ident(name)
                    )
                )
        return name

    def grant(self, role: str, member: str) -> None:
        """A membership granted by the superuser, not by jitgate's admin."""
        with self.env.superuser() as db:
            db.execute(sql.SQL("GRANT {} TO {}").format(ident(role), ident(member)))

    def connect(self, login: str) -> Connection:
        conn = psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=login, dbname=self.env.database, autocommit=True
        )
        self.sessions.append(conn)
        return conn

    def memberships(self, login: str) -> list[tuple[str, str, bool]]:
        """(role, grantor, admin option) of each direct membership of ``login``."""
        with self.env.superuser() as db:
            rows = db.execute(
                "SELECT g.rolname, gr.rolname, m.admin_option FROM pg_auth_members m"
                " JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles gr ON gr.oid = m.grantor"
                " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY 1, 2",
                [login],
            ).fetchall()
        return [(str(role), str(grantor), bool(admin)) for role, grantor, admin in rows]

    def exists(self, name: str) -> bool:
        with self.env.superuser() as db:
            return db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is not None

    def drop_all(self) -> None:
        for conn in self.sessions:
            conn.close()
        with self.env.superuser() as db:
            for name in reversed(self.made):
                if db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone() is None:
                    continue  # the test dropped it
                db.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s", [name]
                )
                db.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(ident(name)))
                db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(name)))


@contextlib.contextmanager
def pg_roles(env: PgEnv) -> Iterator[PgRoles]:
    roles = PgRoles(env)
    try:
        yield roles
    finally:
        roles.drop_all()


def reads_orders(conn: Connection) -> bool:
    """Whether the session may read ``app.orders`` (the elevated thing) right now."""
    try:
        conn.execute("SELECT count(*) FROM app.orders").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def ended(conn: Connection) -> bool:
    """Whether the server has terminated the session."""
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False
