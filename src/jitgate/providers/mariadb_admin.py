"""Admin connections to a MariaDB target: its settings, connecting, and errors without secrets.

The admin DSN and the target's options become ``Settings`` (the options are checked without a
server, so ``validate`` reports the same problems). Each admin connection is checked once, when it
is opened, for the power to kill other users' connections (MariaDB fixes a session's global
privileges when it logs in): without it a revocation would leave open sessions alive. Every
statement and ping is bounded by ``IO_TIMEOUT``. A connect that never got the server's greeting
raises ``TargetUnreachable``; whatever the driver says goes through ``scrub``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

import pymysql
from pymysql.connections import Connection
from pymysql.constants import CR
from pymysql.cursors import Cursor

from jitgate.errors import ProviderError, TargetUnreachable
from jitgate.policy.model import Target
from jitgate.providers.dsn import POOL_SIZE, admin_dsn, pool_size_problem, scrub

USER_HOST = re.compile(r"^[A-Za-z0-9.%_:-]{1,255}$")
GRANT_LINE = re.compile(
    r"^GRANT (?P<privileges>.+?) ON (?P<on>\*\.\*|`(?:[^`]|``)+`\.(?:\*|`(?:[^`]|``)+`)) TO "
)
KILL_PRIVILEGES = frozenset({"CONNECTION ADMIN", "SUPER", "ALL PRIVILEGES"})
OPTIONS = frozenset({"user_host", "connect_timeout", "admin_connections", "set_default_role"})
# PyMySQL's own errors for a connection that failed or dropped (the server sends codes below 2000).
NO_SERVER_ANSWER = frozenset({CR.CR_CONN_HOST_ERROR, CR.CR_SERVER_GONE_ERROR, CR.CR_SERVER_LOST})
# Bounds every statement and ping on an admin connection, so a server that vanished without closing
# the connection cannot hang a pooled one; the statements here are small.
IO_TIMEOUT = 30

Admin: TypeAlias = "Connection[Cursor]"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None
    user_host: str
    connect_timeout: int
    admin_connections: int
    dsn: str = field(repr=False)
    set_default_role: bool = False

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.dsn, self.password)


def settings_of(environ: Mapping[str, str], target: Target) -> Settings:
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
    problems = option_problems(target)
    if problems:
        raise ProviderError(problems[0])
    return Settings(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")) or None,
        user_host=str(target.options.get("user_host", "%")),
        connect_timeout=int(target.options.get("connect_timeout", 5)),
        admin_connections=int(target.options.get("admin_connections", POOL_SIZE)),
        dsn=dsn,
        set_default_role=target.options.get("set_default_role", False) is True,
    )


def option_problems(target: Target) -> list[str]:
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
    if not isinstance(options.get("set_default_role", False), bool):
        problems.append(f"{where}: set_default_role must be true or false")
    return problems


def connect_admin(settings: Settings, target: Target) -> Admin:
    conn = connect(settings, target)
    try:
        with reported(target, "checking the admin's privileges", settings), conn.cursor() as cur:
            _require_kill_privilege(cur, target)
    except BaseException:
        conn.close()
        raise
    return conn


def alive(conn: Admin) -> bool:
    conn.ping(reconnect=False)
    return True


def reusable(conn: Admin) -> bool:
    return bool(conn.open)


def close(conn: Admin) -> None:
    conn.close()


def connect(
    settings: Settings, target: Target, *, user: str | None = None, password: str | None = None
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
        raise error(
            f"mariadb target {target.name}: cannot connect{who}: {reason_of(exc, secrets_)}"
        ) from None
    return conn


def _no_server_answered(conn: Admin, exc: pymysql.MySQLError) -> bool:
    """Whether a failed connect never heard from a server: refused, timed out, no such host, or the
    connection dropped before the server's greeting. A server that answered (a wrong password, too
    many connections, a TLS problem after the greeting) is not "unreachable"."""
    greeted = getattr(conn, "server_version", None) is not None
    return not greeted and bool(exc.args) and exc.args[0] in NO_SERVER_ANSWER


@contextmanager
def reported(target: Target, action: str, settings: Settings, *secrets: str) -> Iterator[None]:
    """Turn a driver error into a one-line ``ProviderError`` with no secret and no chained cause."""
    try:
        yield
    except pymysql.MySQLError as exc:
        reason = reason_of(exc, (*settings.secrets, *secrets))
        raise ProviderError(f"mariadb target {target.name}: {action} failed: {reason}") from None


def reason_of(exc: pymysql.MySQLError, secrets: Sequence[str]) -> str:
    args: tuple[Any, ...] = exc.args
    if len(args) == 2 and isinstance(args[0], int):
        return scrub(f"{args[1]} (error {args[0]})", secrets)
    return scrub(str(exc) or type(exc).__name__, secrets)


def _require_kill_privilege(cur: Cursor, target: Target) -> None:
    """Refuse an admin that could not end the login's connections (KILL would silently do nothing)."""
    if not admin_grants(cur).get((None, None), set()) & KILL_PRIVILEGES:
        raise ProviderError(
            f"mariadb target {target.name}: the admin lacks CONNECTION ADMIN, so it could not end the "
            "login's connections"
        )


def admin_grants(cur: Cursor) -> dict[tuple[str | None, str | None], set[str]]:
    """The admin's own privileges by level: ``(None, None)`` global, ``(db, None)``, ``(db, table)``.

    Privileges that reach the admin only through a role are not listed (``SHOW GRANTS`` shows what
    is active), so this errs towards less.
    """
    cur.execute("SHOW GRANTS")
    held: dict[tuple[str | None, str | None], set[str]] = {}
    for (line,) in cur.fetchall():
        # Only the privilege list and level are read: these lines may carry the password hash.
        match = GRANT_LINE.match(str(line))
        if match:
            level = (None, None) if match["on"] == "*.*" else _level(match["on"])
            held.setdefault(level, set()).update(
                part.strip().upper() for part in match["privileges"].split(",")
            )
    return held


def _level(on: str) -> tuple[str | None, str | None]:
    database, _, table = on.partition("`.")
    name = database[1:].replace("``", "`")
    return name, None if table == "*" else table[1:-1].replace("``", "`")
