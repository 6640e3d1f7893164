"""MariaDB credential provider: one ephemeral user per grant; its connections killed and the user dropped.

MariaDB has no ``VALID UNTIL``: nothing at the server ends the login by itself, so the broker's
revocation is the only guard. It is retried until it succeeds and shows as pending meanwhile;
alert on pending revocations of mariadb targets.

Needs MariaDB 10.5 or later. Admin DSN: ``mysql://user:password@host:port/database`` (or
``mariadb://``; percent-encode special characters). The admin needs ``CREATE USER`` and
``CONNECTION ADMIN`` (or ``SUPER``) globally, each privilege it hands out WITH GRANT OPTION, each
role it hands out WITH ADMIN OPTION, and, in every schema where logins may define routines, views,
events or triggers, the privileges to see and drop them (``mariadb_revocation``). Without the power
to kill other users' connections a revocation would leave open sessions alive, so issue and revoke
both refuse to run without it.

Issue: ``CREATE USER 'login'@'host' IDENTIFIED BY PASSWORD '<hash>' [WITH MAX_USER_CONNECTIONS n]``,
then ``GRANT`` each role and each privilege spec (``PRIV[, PRIV...] ON db.*`` or ``ON db.table``,
object privileges from a fixed list only; ``*.*`` and the system schemas are refused). The server
receives the password's hash, never the cleartext, since statements can reach the server's logs.
Setting another user's default role needs UPDATE on the ``mysql`` schema, which is control of every
account; a user may set its own, so the broker logs in once as the new user to do it (``user_host``
must therefore admit the broker). MariaDB activates one default role: the first of the role's
``roles``; the others are granted and taken with ``SET ROLE``. MariaDB DDL is not transactional, so
on any failure the user is dropped again; should even that fail, revoking the recorded handle
removes it.

Revoke (idempotent; a user already gone is revoked; ``mariadb_revocation``): ``ALTER USER ...
ACCOUNT LOCK`` (no new connection), ``KILL CONNECTION USER``, drop every routine, view, event and
trigger whose DEFINER is the user, ``DROP USER IF EXISTS``, and a second kill for a connection that
authenticated in between. It returns what it dropped, for the audit log.

Elevation (``ElevationProvider``): a role with ``mariadb.existing_login`` grants its ``roles`` to
the identity's existing account (``mariadb_accounts`` reads the account's name) for the window
and takes them back at the end, ending the account's sessions (``mariadb_elevation``).

Admin connections (``mariadb_admin``) are pooled (``AdminPool``, a few per target): pinged before
reuse, and closed rather than reused after any failure.

Target options:
    user_host          host part of the created user (default ``%``).
    connect_timeout    seconds to wait for the server (default 5).
    admin_connections  admin connections kept open (default 4, at most 32).
    set_default_role   elevation sets the first role as the default role of an account that has
                       none, and clears it at the end (default false; needs UPDATE on mysql.*).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pymysql
from pymysql.cursors import Cursor

from jitgate.errors import ProviderError
from jitgate.policy.model import Role, Target
from jitgate.providers import mariadb_elevation as elevation
from jitgate.providers.base import CredentialProvider, Health, Issued, IssueRequest, ProviderContext
from jitgate.providers.dsn import PooledProvider, checked_login, new_login
from jitgate.providers.mariadb_accounts import mapping_problems, parse_account
from jitgate.providers.mariadb_admin import (
    Admin,
    Settings,
    admin_grants,
    alive,
    close,
    connect,
    connect_admin,
    option_problems,
    reason_of,
    reported,
    reusable,
    settings_of,
)
from jitgate.providers.mariadb_revocation import revoke_user
from jitgate.providers.mariadb_safety import (
    DEFINING,
    Privilege,
    parse_privilege,
    role_name,
    role_problem,
    unsweepable,
)

__all__ = ["MariadbProvider", "create_provider", "native_password_hash", "parse_privilege"]

log = logging.getLogger(__name__)

KIND = "mariadb"
INVALID_ROLE = 1959


@dataclass(frozen=True, slots=True)
class _NewUser:
    login: str
    password: str = field(repr=False)
    host: str
    roles: tuple[str, ...]
    grants: tuple[Privilege, ...]
    connection_limit: int | None


class MariadbProvider(PooledProvider[Admin]):
    """Ephemeral MariaDB users, and elevation of existing ones. One instance serves every thread;
    it pools admin connections."""

    kind = KIND
    revocable = True

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ, alive=alive, reusable=reusable, close=close)

    def validate(self, role: Role, target: Target) -> list[str]:
        """Problems of ``role`` on ``target`` found without a server: names, privilege specs, options."""
        problems = option_problems(target)
        access = role.mariadb
        if access is not None:
            for name in access.roles:
                problem = role_problem(name, target)
                if problem:
                    problems.append(f"role {role.name}: mariadb.roles {problem}")
            for spec in access.privileges:
                try:
                    parse_privilege(spec)
                except ProviderError as exc:
                    problems.append(f"role {role.name}: mariadb.privileges {exc.message}")
            if access.existing_login is not None:
                problems += [
                    f"role {role.name}: mariadb.existing_login {problem}"
                    for problem in mapping_problems(access.existing_login)
                ]
                if access.privileges or access.connection_limit is not None:
                    problems.append(
                        f"role {role.name}: with mariadb.existing_login only roles are granted"
                        " (no privileges, no connection_limit)"
                    )
        return problems

    @contextmanager
    def _admin(self, settings: Settings, target: Target) -> Iterator[Admin]:
        with self._pool.connection(
            target.name,
            settings.dsn,
            lambda: connect_admin(settings, target),
            size=settings.admin_connections,
            label=f"mariadb target {target.name}",
        ) as conn:
            yield conn

    def new_handle(self, request: IssueRequest) -> str:
        return new_login(request.identity.name)

    def issue(self, request: IssueRequest, handle: str) -> Issued:
        target, role = request.target, request.role
        access = role.mariadb
        if access is None:
            raise ProviderError(f"role {role.name} gives no mariadb access on target {target.name}")
        login = checked_login(handle)
        roles = tuple(dict.fromkeys(role_name(name, target) for name in access.roles))
        grants = tuple(parse_privilege(spec) for spec in access.privileges)
        if request.grant.expires_at <= request.now:
            raise ProviderError(f"grant {request.grant.id} has already expired")
        settings = settings_of(self._environ, target)
        password = secrets.token_urlsafe(32)
        with self._admin(settings, target) as conn:
            new = _NewUser(login, password, settings.user_host, roles, grants, access.connection_limit)
            try:
                _create(conn, new, settings, target)
            except Exception:
                _drop_quietly(conn, login, settings, target)
                raise
        log.info("created login %s on target %s (no server-side expiry)", login, target.name)
        host = target.address or settings.host
        port = target.port or settings.port
        database = settings.database or ""
        return Issued(
            handle=login,
            valid_after=request.now,
            valid_before=request.grant.expires_at,
            record={
                "login": login,
                "host": settings.user_host,
                "roles": list(roles),
                "default_role": roles[0] if roles else None,
                "privileges": [str(grant) for grant in grants],
                "database": database,
                "valid_until": request.grant.expires_at.isoformat(),
                "server_expiry": False,
            },
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
        """End ``handle`` and drop what it defined; returns the objects dropped, for the audit."""
        login = checked_login(handle)
        settings = settings_of(self._environ, target)
        with (
            self._admin(settings, target) as conn,
            reported(target, f"revoking login {login}", settings),
            conn.cursor() as cur,
        ):
            dropped = revoke_user(cur, login, settings.user_host)
        log.info(
            "revoked login %s on target %s, dropping %d object(s) it defined",
            login,
            target.name,
            len(dropped),
        )
        return {"dropped": dropped} if dropped else None

    def find_account(self, target: Target, account: str) -> str | None:
        """``'user'@'host'`` when the account exists (and is no role); ``ElevationRefused`` for one
        jitgate does not elevate (``mariadb_elevation``)."""
        parsed = parse_account(account, target.name)
        with self._cursor(target) as (cur, settings):
            return elevation.find(cur, parsed, settings, target)

    def held(self, target: Target, account: str, items: tuple[str, ...]) -> frozenset[str]:
        parsed = parse_account(account, target.name)
        with self._cursor(target) as (cur, settings):
            return elevation.held(cur, parsed, settings, target) & set(items)

    def elevate(self, target: Target, account: str, items: tuple[str, ...]) -> dict[str, Any]:
        parsed = parse_account(account, target.name)
        roles = tuple(dict.fromkeys(role_name(name, target) for name in items))
        with self._cursor(target) as (cur, settings):
            return elevation.elevate(cur, parsed, roles, settings, target)

    def withdraw(self, target: Target, account: str, items: tuple[str, ...]) -> dict[str, Any]:
        try:
            parsed = parse_account(account, target.name)
        except ProviderError as exc:  # never ElevationRefused here: taking back is retried, not dropped
            raise ProviderError(exc.message) from None
        roles = tuple(dict.fromkeys(role_name(name, target) for name in items))
        with self._cursor(target) as (cur, settings):
            return elevation.withdraw(cur, parsed, roles, settings, target)

    @contextmanager
    def _cursor(self, target: Target) -> Iterator[tuple[Cursor, Settings]]:
        settings = settings_of(self._environ, target)
        with self._admin(settings, target) as conn, conn.cursor() as cur:
            yield cur, settings

    def check(self, target: Target) -> Health:
        try:
            settings = settings_of(self._environ, target)
            with (
                self._admin(settings, target) as conn,
                reported(target, "health check", settings),
                conn.cursor() as cur,
            ):
                cur.execute("SELECT CURRENT_USER(), VERSION()")
                row = cur.fetchone()
        except ProviderError as exc:
            return Health(ok=False, detail=exc.message)
        user, version = row if row else ("?", "?")
        return Health(ok=True, detail=f"connected as {user} to MariaDB {version}")


def create_provider(ctx: ProviderContext) -> CredentialProvider:
    """Entry point of the built-in ``mariadb`` kind."""
    return MariadbProvider(ctx.environ)


def native_password_hash(password: str) -> str:
    """The stored form of ``mysql_native_password``, so the cleartext never travels to the server."""
    # The plugin defines this form; the password is 256 random bits, so SHA-1 costs nothing here.
    inner = hashlib.sha1(password.encode()).digest()  # noqa: S324
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


def _create(conn: Admin, new: _NewUser, settings: Settings, target: Target) -> None:
    user = (new.login, new.host)
    with conn.cursor() as cur:
        if any(DEFINING & set(grant.privileges) for grant in new.grants):
            with reported(target, "checking the admin's privileges", settings):
                held = admin_grants(cur)
            if problem := unsweepable(new.grants, held, target):
                raise ProviderError(problem)
        with reported(target, f"creating login {new.login}", settings, new.password):
            limit = new.connection_limit
            suffix = f" WITH MAX_USER_CONNECTIONS {int(limit)}" if limit is not None else ""
            statement = f"CREATE USER %s@%s IDENTIFIED BY PASSWORD %s{suffix}"
            cur.execute(statement, (*user, native_password_hash(new.password)))
        for name in new.roles:
            try:
                cur.execute(f"GRANT `{name}` TO %s@%s", user)
            except pymysql.MySQLError as exc:
                if exc.args and exc.args[0] == INVALID_ROLE:
                    raise ProviderError(f"role {name} does not exist on target {target.name}") from None
                reason = reason_of(exc, (*settings.secrets, new.password))
                raise ProviderError(
                    f"mariadb target {target.name}: granting role {name} failed: {reason}"
                ) from None
        for grant in new.grants:
            with reported(target, f"granting {grant}", settings, new.password):
                cur.execute(grant.grant_sql(), user)
    if new.roles:
        _set_default_role(settings, new, target)


def _set_default_role(settings: Settings, new: _NewUser, target: Target) -> None:
    with (
        connect(settings, target, user=new.login, password=new.password) as own,
        reported(target, f"setting default role of {new.login}", settings, new.password),
        own.cursor() as cur,
    ):
        cur.execute(f"SET DEFAULT ROLE `{new.roles[0]}`")


def _drop_quietly(conn: Admin, login: str, settings: Settings, target: Target) -> None:
    try:
        with conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@%s", (login, settings.user_host))
    except pymysql.MySQLError:
        log.warning("could not drop half-created login %s on target %s; revoking it will", login, target.name)


def _user_dsn(user: str, password: str, host: str, port: int, database: str) -> str:
    netloc = f"[{host}]" if ":" in host else host
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"mysql://{credentials}@{netloc}:{port}/{quote(database, safe='')}"
