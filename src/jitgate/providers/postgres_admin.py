"""Admin connections to a PostgreSQL target: its settings, connecting, and errors without secrets.

The target's options and the admin DSN become ``Settings`` (checked without a server, so
``validate`` can report the same problems). A connection gets TCP keepalives and
``tcp_user_timeout`` so that a silently vanished server cannot hang a pooled one, and a
``lock_timeout`` so that a revocation waiting on someone else's lock fails and is retried. A
connect that reaches no server raises ``TargetUnreachable``; libpq reports only text, so that is
told from its messages (``NO_SERVER_ANSWER``). Whatever the driver says goes through ``scrub``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from jitgate.errors import ProviderError, TargetUnreachable
from jitgate.policy.model import Target
from jitgate.providers.dsn import POOL_SIZE, admin_dsn, pool_size_problem, scrub, socket_readable
from jitgate.providers.postgres_safety import reassign_to_problem

DATABASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
OPTIONS = frozenset({"reassign_to", "databases", "connect_timeout", "admin_connections"})
# What libpq, psycopg and the system say when a connect reached no server (lowercased).
NO_SERVER_ANSWER = (
    "connection refused",
    "timeout expired",
    "connection timed out",
    "failed to resolve host",
    "could not translate host name",
    "no route to host",
    "network is unreachable",
    "host is unreachable",
    "connection reset by peer",
    "server closed the connection unexpectedly",
)
# How libpq prefixes a message the server sent.
SERVER_SEVERITIES = ("fatal:", "error:", "panic:")

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Settings:
    dsn: str = field(repr=False)
    params: Mapping[str, Any] = field(repr=False)
    password: str | None = field(repr=False)
    reassign_to: str | None
    databases: tuple[str, ...]
    connect_timeout: int
    admin_connections: int

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.dsn, self.password or "")


def settings_of(environ: Mapping[str, str], target: Target) -> Settings:
    problems = option_problems(target)
    if problems:
        raise ProviderError(problems[0])
    dsn = admin_dsn(environ, target)
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        raise ProviderError(
            f"postgres target {target.name}: the admin DSN in {target.admin_dsn_env} is not a valid "
            "connection string"
        ) from None
    options = target.options
    reassign_to = options.get("reassign_to")
    password = params.get("password")
    return Settings(
        dsn=dsn,
        params=params,
        password=str(password) if password else None,
        reassign_to=None if reassign_to is None else str(reassign_to),
        databases=tuple(options.get("databases", ())),
        connect_timeout=int(options.get("connect_timeout", 5)),
        admin_connections=int(options.get("admin_connections", POOL_SIZE)),
    )


def option_problems(target: Target) -> list[str]:
    """Every problem with ``target.options``, one line each; needs neither the DSN nor a server."""
    options = target.options
    where = f"postgres target {target.name}"
    problems: list[str] = []
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        problems.append(f"{where}: unknown option(s) {', '.join(unknown)}")
    reassign_to = options.get("reassign_to")
    if reassign_to is not None:
        if not isinstance(reassign_to, str):
            problems.append(f"{where}: reassign_to must be a role name")
        elif problem := reassign_to_problem(reassign_to, target):
            problems.append(f"{where}: reassign_to {problem}")
    databases = options.get("databases", ())
    if not isinstance(databases, list | tuple) or not all(
        isinstance(db, str) and DATABASE_NAME.fullmatch(db) for db in databases
    ):
        problems.append(f"{where}: databases must be a list of database names")
    timeout = options.get("connect_timeout", 5)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 300:
        problems.append(f"{where}: connect_timeout must be 1 to 300 seconds")
    if problem := pool_size_problem(target):
        problems.append(problem)
    return problems


def connect(settings: Settings, target: Target, dbname: str | None = None) -> Connection:
    # A pooled connection to a server that vanished without a word (no FIN, no RST) would otherwise
    # hang its next statement for many minutes; settings in the DSN itself win.
    keepalive: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": max(settings.connect_timeout, 10) * 1000,
    }
    extra: dict[str, Any] = {k: v for k, v in keepalive.items() if k not in settings.params}
    if dbname:
        extra["dbname"] = dbname
    where = f" to database {dbname}" if dbname else ""
    try:
        conn = psycopg.connect(
            settings.dsn, autocommit=True, connect_timeout=settings.connect_timeout, **extra
        )
    except psycopg.Error as exc:
        error = TargetUnreachable if _no_server_answered(exc) else ProviderError
        raise error(
            f"postgres target {target.name}: cannot connect{where}: {reason_of(exc, settings.secrets)}"
        ) from None
    try:
        # A revoke waiting on a lock held elsewhere fails and is retried rather than hanging.
        conn.execute("SET lock_timeout = '10s'")
    except psycopg.Error as exc:
        conn.close()
        raise ProviderError(
            f"postgres target {target.name}: cannot configure session: {reason_of(exc, settings.secrets)}"
        ) from None
    return conn


def _no_server_answered(exc: psycopg.Error) -> bool:
    """Whether a failed connect never reached a server: refused, timed out, no such host, or closed
    before the server said anything. A server that answered (a wrong password, a missing database,
    too many connections) is not "unreachable": it reports its reason in a ``FATAL:`` line.

    libpq gives no structured cause, only text; its own messages and the system's are untranslated
    (the broker never sets ``LC_MESSAGES``). With several hosts, psycopg lists every attempt, so a
    server's answer to any of them shows up here too.
    """
    if isinstance(exc, pg_errors.ConnectionTimeout):
        return True
    text = str(exc).lower()
    if any(severity in text for severity in SERVER_SEVERITIES):
        return False
    return any(words in text for words in NO_SERVER_ANSWER)


def alive(conn: Connection) -> bool:
    return not conn.closed and not conn.broken and not socket_readable(conn.fileno())


def reusable(conn: Connection) -> bool:
    return not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE


def close(conn: Connection) -> None:
    conn.close()


@contextmanager
def reported(target: Target, action: str, settings: Settings, *secrets: str) -> Iterator[None]:
    """Turn a driver error into a one-line ``ProviderError`` with no secret and no chained cause."""
    try:
        yield
    except psycopg.Error as exc:
        reason = reason_of(exc, (*settings.secrets, *secrets))
        raise ProviderError(f"postgres target {target.name}: {action} failed: {reason}") from None


def reason_of(exc: psycopg.Error, secrets: Sequence[str]) -> str:
    text = exc.diag.message_primary or str(exc)
    detail = exc.diag.message_detail
    if isinstance(exc, pg_errors.DependentObjectsStillExist) and detail:
        lines = detail.splitlines()
        more = f" and {len(lines) - 1} more" if len(lines) > 1 else ""
        hints = []
        if any(line.startswith("privileges for") for line in lines):
            hints.append("the admin needs the privileges of whoever granted them, e.g. the object owner")
        if any(" in database " in line for line in lines):
            hints.append("the next attempt cleans that database too")
        text += f" ({'; '.join([lines[0] + more, *hints])})"
    return scrub(text, secrets)
