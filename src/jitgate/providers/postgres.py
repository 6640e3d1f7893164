"""PostgreSQL credential provider: one ephemeral LOGIN role per grant, gone without a trace at the end.

Issue creates the login with one statement, so a failure leaves no half-created login. The
``member_of`` roles are checked first (``postgres_safety``): they must exist, and neither they nor
any role they belong to may have SUPERUSER or CREATEROLE. Then ``CREATE ROLE <login> LOGIN
PASSWORD <verifier> VALID UNTIL <expires_at> IN ROLE ...``. The password becomes a SCRAM-SHA-256
verifier on the broker, so the cleartext never reaches the server, whose log records failing
statements. ``VALID UNTIL`` binds password authentication only; the broker's revocation is what
really ends the login.

Managed databases give no superuser, only CREATEROLE. On PostgreSQL 15 such an admin may drop a
role it created, but may neither terminate that role's sessions nor REASSIGN/DROP OWNED it without
the privileges of that role; PostgreSQL 16 makes the creator a member WITH ADMIN OPTION but without
INHERIT, which is not enough either. So revoke starts with ``GRANT <login> TO CURRENT_USER``
when the admin lacks those privileges. Not earlier, at issue: every membership the admin holds
makes the server's privilege checks for the admin slower (it recomputes the admin's membership
closure after each change): with a thousand live logins a revocation took 2.5 times as long.

Revoke is idempotent (a login already gone is revoked) and safe to retry after any failure:
``NOLOGIN`` (committed first, so no new session starts), terminate the login's sessions on every
database, then in every database where the login owns something or holds a privilege drop what it
owned — or, with a harmless ``reassign_to`` owner, neuter and reassign it — and its privileges and
default privileges (``postgres_revocation``), and finally ``DROP ROLE``, in the DSN's own database
in the same transaction as its cleanup there. It returns what became of the objects, for the
audit log.

Statements that belong to one transaction go to the server as one message (the simple query
protocol runs them as one implicit transaction): one round trip and one commit, which is what a
burst of expiries waits on.

A role with ``existing_login`` elevates the identity's own login instead: ``GRANT`` of its
``member_of`` roles for the window, ``REVOKE`` and the end of the login's sessions afterwards
(``postgres_elevation``, the ``ElevationProvider`` methods below).

Admin connections (``postgres_admin``) are pooled (``AdminPool``, a few per target and database):
opening one costs more than the statements themselves.

Target options:
    reassign_to        role that receives what the login created instead of it being dropped;
                       checked at every revocation (no special powers, none through memberships,
                       the admin holds its privileges), else the objects are dropped after all.
    databases          databases to clean besides those the server's catalog names (kept for
                       older policies; the catalog finds them all).
    connect_timeout    seconds to wait for the server (default 5).
    admin_connections  admin connections kept open per database (default 4, at most 32).

The credential handed out connects to ``target.address``/``target.port`` when set, else to the
host and port of the admin DSN.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote

from psycopg import errors as pg_errors
from psycopg import sql

from jitgate.errors import ProviderError
from jitgate.policy.model import PostgresAccess, Role, Target
from jitgate.providers import postgres_elevation as elevation
from jitgate.providers.base import CredentialProvider, Health, Issued, IssueRequest, ProviderContext
from jitgate.providers.dsn import PooledProvider, checked_login, new_login
from jitgate.providers.postgres_admin import (
    Connection,
    Settings,
    alive,
    close,
    connect,
    option_problems,
    reported,
    reusable,
    settings_of,
)
from jitgate.providers.postgres_revocation import (
    clean,
    databases_with_traces,
    objects_outcome,
    terminate_sessions,
)
from jitgate.providers.postgres_safety import check_member_of, owner_problem, role_name, role_problem

log = logging.getLogger(__name__)

KIND = "postgres"


class PostgresProvider(PooledProvider[Connection]):
    """Ephemeral PostgreSQL logins. One instance serves every thread; it pools admin connections."""

    kind = KIND
    revocable = True

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ, alive=alive, reusable=reusable, close=close)

    def validate(self, role: Role, target: Target) -> list[str]:
        """Problems of ``role`` on ``target`` found without a server: names, target options."""
        problems = option_problems(target)
        if role.postgres is not None:
            for name in role.postgres.member_of:
                problem = role_problem(name, target)
                if problem:
                    problems.append(f"role {role.name}: postgres.member_of {problem}")
            problems.extend(elevation.existing_login_problems(role, target))
        return problems

    def find_account(self, target: Target, account: str) -> str | None:
        """The existing login ``account``, if it can log in; ``ElevationRefused`` for one never elevated."""
        settings = settings_of(self._environ, target)
        with self._admin(settings, target) as conn, reported(target, f"looking up login {account}", settings):
            return elevation.find_account(conn, account, target)

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        settings = settings_of(self._environ, target)
        with self._admin(settings, target) as conn, reported(target, f"reading login {account}", settings):
            return elevation.held(conn, account, items)

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> dict[str, Any]:
        """``GRANT`` the roles ``items`` to the existing login ``account`` (see ``postgres_elevation``)."""
        elevation.refuse_names(account, items, target)
        settings = settings_of(self._environ, target)
        with self._admin(settings, target) as conn, reported(target, f"elevating login {account}", settings):
            done = elevation.elevate(conn, account, items, target)
        log.info("granted %s to login %s on target %s", ", ".join(items), account, target.name)
        return done

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> dict[str, Any]:
        """``REVOKE`` the roles and end the login's sessions that may still hold them."""
        settings = settings_of(self._environ, target)
        with (
            self._admin(settings, target) as conn,
            reported(target, f"withdrawing from login {account}", settings),
        ):
            done = elevation.withdraw(conn, account, items, target)
        log.info("withdrew %s from login %s on target %s: %s", ", ".join(items), account, target.name, done)
        return done

    @contextmanager
    def _admin(self, settings: Settings, target: Target, dbname: str | None = None) -> Iterator[Connection]:
        with self._pool.connection(
            (target.name, dbname),
            settings.dsn,
            lambda: connect(settings, target, dbname),
            size=settings.admin_connections,
            label=f"postgres target {target.name}",
        ) as conn:
            yield conn

    def new_handle(self, request: IssueRequest) -> str:
        return new_login(request.identity.name)

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        target, role = request.target, request.role
        if role.postgres is None:
            raise ProviderError(f"role {role.name} gives no postgres access on target {target.name}")
        login = checked_login(handle)
        member_of = tuple(dict.fromkeys(role_name(name, target) for name in role.postgres.member_of))
        expires_at = request.grant.expires_at
        if expires_at <= request.now:
            raise ProviderError(f"grant {request.grant.id} has already expired")
        settings = settings_of(self._environ, target)
        password = secrets.token_urlsafe(32)
        with (
            self._admin(settings, target) as conn,
            reported(target, f"creating login {login}", settings, password),
        ):
            check_member_of(conn, member_of, target)
            conn.execute(
                _create_role(
                    conn, login, password, expires_at=expires_at, member_of=member_of, access=role.postgres
                )
            )
            host = target.address or conn.info.host
            port = target.port or conn.info.port
            database = conn.info.dbname
        log.info("created login %s on target %s until %s", login, target.name, expires_at.isoformat())
        record: dict[str, Any] = {
            "login": login,
            "member_of": list(member_of),
            "valid_until": expires_at.isoformat(),
            "database": database,
        }
        if role.postgres.connection_limit is not None:
            record["connection_limit"] = role.postgres.connection_limit
        return Issued(
            handle=login,
            valid_after=request.now,
            valid_before=expires_at,
            record=record,
            secret={
                "user": login,
                "password": password,
                "dsn": _user_dsn(login, password, host, port, database),
                "host": host,
                "port": port,
                "database": database,
            },
        )

    def revoke(self, target: Target, handle: str) -> dict[str, Any] | None:
        """End ``handle`` and remove what it left; returns what became of its objects, for the audit."""
        login = checked_login(handle)
        settings = settings_of(self._environ, target)
        with self._admin(settings, target) as conn, reported(target, f"revoking login {login}", settings):
            privileged = _privileges_of(conn, login)
            if privileged is None:
                log.debug("login %s on target %s is already gone", login, target.name)
                return None
            try:
                lock = sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(login))
                if not privileged:
                    lock += sql.SQL("; GRANT {} TO CURRENT_USER").format(sql.Identifier(login))
                conn.execute(lock)
                terminate_sessions(conn, login, target)
                outcome, owner = objects_outcome(conn, login, settings, target)
                here = conn.info.dbname
                elsewhere = [db for db in dict.fromkeys(settings.databases) if db != here]
                self._clean_in(elsewhere, login, owner, settings, target)
                try:
                    clean(conn, login, owner, settings, target, and_role=True)
                except pg_errors.DependentObjectsStillExist:
                    # It left something in another database; the server's catalog says which. Found
                    # only now, so the common case costs no extra round trip.
                    more = [db for db in databases_with_traces(conn, login) if db not in {here, *elsewhere}]
                    if not more:
                        raise
                    self._clean_in(more, login, owner, settings, target)
                    elsewhere += more
                    clean(conn, login, owner, settings, target, and_role=True)
            except pg_errors.UndefinedObject:
                # Another broker replica may have finished this revocation meanwhile.
                if _role_exists(conn, login):
                    raise
                return None
        log.info("revoked login %s on target %s; its objects %s", login, target.name, outcome["objects"])
        return {**outcome, "databases": sorted({here, *elsewhere})}

    def _clean_in(
        self, databases: Sequence[str], login: str, owner: str | None, settings: Settings, target: Target
    ) -> None:
        for database in databases:
            with (
                self._admin(settings, target, database) as other,
                reported(target, f"cleaning login {login} in database {database}", settings),
            ):
                clean(other, login, owner, settings, target)

    def check(self, target: Target) -> Health:
        """Reachable, an admin that can create roles, and a ``reassign_to`` owner that is harmless."""
        unsafe = None
        try:
            settings = settings_of(self._environ, target)
            with self._admin(settings, target) as conn, reported(target, "health check", settings):
                row = conn.execute(
                    "SELECT current_user, rolsuper OR rolcreaterole, current_setting('server_version')"
                    " FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
                if settings.reassign_to is not None:
                    unsafe = owner_problem(conn, settings.reassign_to)
        except ProviderError as exc:
            return Health(ok=False, detail=exc.message)
        if row is None or not row[1]:
            return Health(ok=False, detail=f"target {target.name}: the admin role lacks CREATEROLE")
        if unsafe is not None:
            return Health(
                ok=False, detail=f"target {target.name}: {unsafe}; revocations drop objects instead"
            )
        return Health(ok=True, detail=f"connected as {row[0]} to PostgreSQL {row[2]}")


def create_provider(ctx: ProviderContext) -> CredentialProvider:
    """Entry point of the built-in ``postgres`` kind."""
    return PostgresProvider(ctx.environ)


def _create_role(
    conn: Connection,
    login: str,
    password: str,
    *,
    expires_at: datetime,
    member_of: Sequence[str],
    access: PostgresAccess,
) -> sql.Composed:
    verifier = conn.pgconn.encrypt_password(password.encode(), login.encode(), b"scram-sha-256")
    statement = sql.SQL(
        "CREATE ROLE {login} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        " INHERIT PASSWORD {verifier} VALID UNTIL {until} IN ROLE {roles}"
    ).format(
        login=sql.Identifier(login),
        verifier=sql.Literal(verifier.decode()),
        until=sql.Literal(expires_at.isoformat()),
        roles=sql.SQL(", ").join(sql.Identifier(name) for name in member_of),
    )
    if access.connection_limit is not None:
        statement += sql.SQL(" CONNECTION LIMIT {}").format(sql.Literal(access.connection_limit))
    return statement


def _role_exists(conn: Connection, login: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [login]).fetchone() is not None


def _privileges_of(conn: Connection, login: str) -> bool | None:
    """Whether the admin has the privileges of ``login``; ``None`` when there is no such login."""
    row = conn.execute(
        "SELECT pg_has_role(CURRENT_USER, oid, 'USAGE') FROM pg_roles WHERE rolname = %s", [login]
    ).fetchone()
    return None if row is None else bool(row[0])


def _user_dsn(user: str, password: str, host: str, port: int, database: str) -> str:
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    if host.startswith("/"):
        query = f"host={quote(host, safe='')}&port={port}"
        return f"postgresql://{credentials}@/{quote(database, safe='')}?{query}"
    netloc = f"[{host}]" if ":" in host else host
    return f"postgresql://{credentials}@{netloc}:{port}/{quote(database, safe='')}"
