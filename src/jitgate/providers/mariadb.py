"""MariaDB credential provider: one ephemeral user per grant; its connections killed and the user dropped.

MariaDB has no ``VALID UNTIL``: nothing at the server ends the login by itself, so the broker's
revocation is the only guard. It is retried until it succeeds and shows as pending meanwhile;
alert on pending revocations of mariadb targets.

Needs MariaDB 10.5 or later. Admin DSN: ``mysql://user:password@host:port/database`` (or
``mariadb://``; percent-encode special characters). The admin needs ``CREATE USER`` and
``CONNECTION ADMIN`` (or ``SUPER``) globally, each privilege it hands out WITH GRANT OPTION, and
each role it hands out WITH ADMIN OPTION. Without the power to kill other users' connections a
revocation would leave open sessions alive, so issue and revoke both refuse to run without it.

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

Revoke (idempotent; a user already gone is revoked): ``ALTER USER ... ACCOUNT LOCK`` (no new
connection), ``KILL CONNECTION USER``, ``DROP USER IF EXISTS``, and a second kill for a connection
that authenticated in between.

Admin connections are pooled (``AdminPool``, a few per target): each is checked once, when it
is opened, for the power to kill connections (MariaDB fixes a session's global privileges when it
logs in), pinged before reuse, and closed rather than reused after any failure. A connect that
never got the server's greeting raises ``TargetUnreachable`` (see ``dsn``).

Target options:
    user_host          host part of the created user (default ``%``).
    connect_timeout    seconds to wait for the server (default 5).
    admin_connections  admin connections kept open (default 4, at most 32).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import quote, unquote, urlsplit

import pymysql
from pymysql.connections import Connection
from pymysql.constants import CR
from pymysql.cursors import Cursor

from jitgate.errors import ProviderError, TargetUnreachable
from jitgate.policy.model import Role, Target
from jitgate.providers.base import CredentialProvider, Health, Issued, IssueRequest, ProviderContext
from jitgate.providers.dsn import (
    POOL_SIZE,
    PooledProvider,
    admin_dsn,
    checked_login,
    new_login,
    pool_size_problem,
    scrub,
)
from jitgate.providers.mariadb_revocation import revoke_user

log = logging.getLogger(__name__)

KIND = "mariadb"
ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
OBJECT_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
USER_HOST = re.compile(r"^[A-Za-z0-9.%_:-]{1,255}$")
PRIVILEGE_SPEC = re.compile(
    r"^\s*(?P<privileges>[A-Za-z ,]+?)\s+ON\s+"
    r"(?P<database>[A-Za-z0-9_]{1,64})\.(?P<table>\*|[A-Za-z0-9_]{1,64})\s*$",
    re.IGNORECASE,
)
GLOBAL_GRANT = re.compile(r"^GRANT (?P<privileges>.+?) ON \*\.\* TO ")
OBJECT_PRIVILEGES = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "EXECUTE",
        "SHOW VIEW",
        "CREATE",
        "DROP",
        "ALTER",
        "INDEX",
        "REFERENCES",
        "CREATE VIEW",
        "CREATE ROUTINE",
        "ALTER ROUTINE",
        "TRIGGER",
        "EVENT",
        "LOCK TABLES",
        "CREATE TEMPORARY TABLES",
        "DELETE HISTORY",
    }
)
SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
KILL_PRIVILEGES = frozenset({"CONNECTION ADMIN", "SUPER", "ALL PRIVILEGES"})
RESERVED_ROLES = frozenset({"public", "none"})
OPTIONS = frozenset({"user_host", "connect_timeout", "admin_connections"})
INVALID_ROLE = 1959
# PyMySQL's own errors for a connection that failed or dropped (the server sends codes below 2000).
NO_SERVER_ANSWER = frozenset({CR.CR_CONN_HOST_ERROR, CR.CR_SERVER_GONE_ERROR, CR.CR_SERVER_LOST})
# Bounds every statement and ping on an admin connection, so a server that vanished without closing
# the connection cannot hang a pooled one; the statements here are small.
IO_TIMEOUT = 30

Admin: TypeAlias = "Connection[Cursor]"


@dataclass(frozen=True, slots=True)
class Privilege:
    """One validated privilege spec: ``privileges ON database.table`` (``table`` None for ``db.*``)."""

    privileges: tuple[str, ...]
    database: str
    table: str | None

    def __str__(self) -> str:
        return f"{', '.join(self.privileges)} ON {self.database}.{self.table or '*'}"

    def grant_sql(self) -> str:
        """``GRANT ... TO %s@%s``: names are whitelisted, then backtick-quoted; the user is a parameter."""
        on = f"`{self.database}`.{f'`{self.table}`' if self.table else '*'}"
        return f"GRANT {', '.join(self.privileges)} ON {on} TO %s@%s"


def parse_privilege(spec: str) -> Privilege:
    """Validate ``SELECT, INSERT ON db.table`` or ``SELECT ON db.*``; refuse anything else."""
    usage = "write PRIVILEGE[, PRIVILEGE] ON database.* or ON database.table"
    match = PRIVILEGE_SPEC.fullmatch(spec)
    if not match:
        raise ProviderError(f"privilege spec {spec!r} is not allowed: {usage}")
    privileges = tuple(" ".join(part.split()).upper() for part in match["privileges"].split(","))
    refused = [p or "(empty)" for p in privileges if p not in OBJECT_PRIVILEGES]
    if refused:
        raise ProviderError(f"privilege spec {spec!r}: {', '.join(refused)} may not be handed out")
    if match["database"].lower() in SYSTEM_SCHEMAS:
        raise ProviderError(f"privilege spec {spec!r}: system schema {match['database']} is off limits")
    table = None if match["table"] == "*" else match["table"]
    return Privilege(tuple(dict.fromkeys(privileges)), match["database"], table)


@dataclass(frozen=True, slots=True)
class _NewUser:
    login: str
    password: str = field(repr=False)
    host: str
    roles: tuple[str, ...]
    grants: tuple[Privilege, ...]
    connection_limit: int | None


@dataclass(frozen=True, slots=True)
class _Settings:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None
    user_host: str
    connect_timeout: int
    admin_connections: int
    dsn: str = field(repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.dsn, self.password)


class MariadbProvider(PooledProvider[Admin]):
    """Ephemeral MariaDB users. One instance serves every thread; it pools admin connections."""

    kind = KIND
    revocable = True

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ, alive=_alive, reusable=_reusable, close=_close)

    def validate(self, role: Role, target: Target) -> list[str]:
        """Problems of ``role`` on ``target`` found without a server: names, privilege specs, options."""
        problems = _option_problems(target)
        access = role.mariadb
        if access is not None:
            for name in access.roles:
                problem = _role_problem(name, target)
                if problem:
                    problems.append(f"role {role.name}: mariadb.roles {problem}")
            for spec in access.privileges:
                try:
                    parse_privilege(spec)
                except ProviderError as exc:
                    problems.append(f"role {role.name}: mariadb.privileges {exc.message}")
        return problems

    @contextmanager
    def _admin(self, settings: _Settings, target: Target) -> Iterator[Admin]:
        with self._pool.connection(
            target.name,
            settings.dsn,
            lambda: _connect_admin(settings, target),
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
        roles = tuple(dict.fromkeys(_role_name(name, target) for name in access.roles))
        grants = tuple(parse_privilege(spec) for spec in access.privileges)
        if request.grant.expires_at <= request.now:
            raise ProviderError(f"grant {request.grant.id} has already expired")
        settings = _settings(self._environ, target)
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
        settings = _settings(self._environ, target)
        with (
            self._admin(settings, target) as conn,
            _reported(target, f"revoking login {login}", settings),
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

    def check(self, target: Target) -> Health:
        try:
            settings = _settings(self._environ, target)
            with (
                self._admin(settings, target) as conn,
                _reported(target, "health check", settings),
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


def _role_name(name: str, target: Target) -> str:
    problem = _role_problem(name, target)
    if problem:
        raise ProviderError(problem)
    return name


def _role_problem(name: str, target: Target) -> str | None:
    if not ROLE_NAME.fullmatch(name):
        return f"role name {name!r} for target {target.name} would need quoting; use letters, digits and _"
    if name.lower() in RESERVED_ROLES:
        return f"role name {name!r} for target {target.name} is reserved by MariaDB"
    return None


def _settings(environ: Mapping[str, str], target: Target) -> _Settings:
    dsn = admin_dsn(environ, target)
    invalid = ProviderError(
        f"mariadb target {target.name}: the admin DSN in {target.admin_dsn_env} is not "
        "mysql://user:password@host:port/database"
    )
    try:
        parts = urlsplit(dsn)
        port = parts.port or 3306
    except ValueError:
        raise invalid from None
    if parts.scheme not in {"mysql", "mariadb"} or not parts.hostname or not parts.username:
        raise invalid
    if parts.query or parts.fragment or "/" in parts.path.lstrip("/"):
        raise invalid
    problems = _option_problems(target)
    if problems:
        raise ProviderError(problems[0])
    return _Settings(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")) or None,
        user_host=str(target.options.get("user_host", "%")),
        connect_timeout=int(target.options.get("connect_timeout", 5)),
        admin_connections=int(target.options.get("admin_connections", POOL_SIZE)),
        dsn=dsn,
    )


def _option_problems(target: Target) -> list[str]:
    """Every problem with ``target.options``, one line each; needs neither the DSN nor a server."""
    options = target.options
    where = f"mariadb target {target.name}"
    problems: list[str] = []
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        problems.append(f"{where}: unknown option(s) {', '.join(unknown)}")
    user_host = options.get("user_host", "%")
    if not isinstance(user_host, str) or not USER_HOST.fullmatch(user_host):
        problems.append(f"{where}: user_host must be a host name, address or pattern")
    timeout = options.get("connect_timeout", 5)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 300:
        problems.append(f"{where}: connect_timeout must be 1 to 300 seconds")
    if problem := pool_size_problem(target):
        problems.append(problem)
    return problems


def _connect_admin(settings: _Settings, target: Target) -> Admin:
    conn = _connect(settings, target)
    try:
        with _reported(target, "checking the admin's privileges", settings), conn.cursor() as cur:
            _require_kill_privilege(cur, target)
    except BaseException:
        conn.close()
        raise
    return conn


def _alive(conn: Admin) -> bool:
    conn.ping(reconnect=False)
    return True


def _reusable(conn: Admin) -> bool:
    return bool(conn.open)


def _close(conn: Admin) -> None:
    conn.close()


def _connect(
    settings: _Settings, target: Target, *, user: str | None = None, password: str | None = None
) -> Admin:
    secrets_ = (*settings.secrets, password or "")
    conn: Admin = Connection(
        defer_connect=True,
        host=settings.host,
        port=settings.port,
        user=user or settings.user,
        password=settings.password if password is None else password,
        # The new user's role is not active before it sets it, so it may not open the database yet.
        database=settings.database if user is None else None,
        connect_timeout=settings.connect_timeout,
        read_timeout=IO_TIMEOUT,
        write_timeout=IO_TIMEOUT,
        autocommit=True,
        charset="utf8mb4",
    )
    try:
        conn.connect()
    except pymysql.MySQLError as exc:
        who = f" as {user}" if user else ""
        error = TargetUnreachable if _no_server_answered(conn, exc) else ProviderError
        raise error(f"mariadb target {target.name}: cannot connect{who}: {_reason(exc, secrets_)}") from None
    return conn


def _no_server_answered(conn: Admin, exc: pymysql.MySQLError) -> bool:
    """Whether a failed connect never heard from a server: refused, timed out, no such host, or the
    connection dropped before the server's greeting. A server that answered (a wrong password, too
    many connections, a TLS problem after the greeting) is not "unreachable"."""
    greeted = getattr(conn, "server_version", None) is not None
    return not greeted and bool(exc.args) and exc.args[0] in NO_SERVER_ANSWER


@contextmanager
def _reported(target: Target, action: str, settings: _Settings, *secrets: str) -> Iterator[None]:
    """Turn a driver error into a one-line ``ProviderError`` with no secret and no chained cause."""
    try:
        yield
    except pymysql.MySQLError as exc:
        reason = _reason(exc, (*settings.secrets, *secrets))
        raise ProviderError(f"mariadb target {target.name}: {action} failed: {reason}") from None


def _reason(exc: pymysql.MySQLError, secrets: Sequence[str]) -> str:
    args: tuple[Any, ...] = exc.args
    if len(args) == 2 and isinstance(args[0], int):
        return scrub(f"{args[1]} (error {args[0]})", secrets)
    return scrub(str(exc) or type(exc).__name__, secrets)


def _require_kill_privilege(cur: Cursor, target: Target) -> None:
    """Refuse an admin that could not end the login's connections (KILL would silently do nothing)."""
    cur.execute("SHOW GRANTS")
    held: set[str] = set()
    for (line,) in cur.fetchall():
        # Only the privilege list is read: these lines may carry the admin's password hash.
        match = GLOBAL_GRANT.match(str(line))
        if match:
            held.update(part.strip().upper() for part in match["privileges"].split(","))
    if not held & KILL_PRIVILEGES:
        raise ProviderError(
            f"mariadb target {target.name}: the admin lacks CONNECTION ADMIN, so it could not end the "
            "login's connections"
        )


def _create(conn: Admin, new: _NewUser, settings: _Settings, target: Target) -> None:
    user = (new.login, new.host)
    with conn.cursor() as cur:
        with _reported(target, f"creating login {new.login}", settings, new.password):
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
                reason = _reason(exc, (*settings.secrets, new.password))
                raise ProviderError(
                    f"mariadb target {target.name}: granting role {name} failed: {reason}"
                ) from None
        for grant in new.grants:
            with _reported(target, f"granting {grant}", settings, new.password):
                cur.execute(grant.grant_sql(), user)
    if new.roles:
        _set_default_role(settings, new, target)


def _set_default_role(settings: _Settings, new: _NewUser, target: Target) -> None:
    with (
        _connect(settings, target, user=new.login, password=new.password) as own,
        _reported(target, f"setting default role of {new.login}", settings, new.password),
        own.cursor() as cur,
    ):
        cur.execute(f"SET DEFAULT ROLE `{new.roles[0]}`")


def _drop_quietly(conn: Admin, login: str, settings: _Settings, target: Target) -> None:
    try:
        with conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@%s", (login, settings.user_host))
    except pymysql.MySQLError:
        log.warning("could not drop half-created login %s on target %s; revoking it will", login, target.name)


def _user_dsn(user: str, password: str, host: str, port: int, database: str) -> str:
    netloc = f"[{host}]" if ":" in host else host
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"mysql://{credentials}@{netloc}:{port}/{quote(database, safe='')}"
