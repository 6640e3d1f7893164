"""PostgreSQL credential provider: one ephemeral LOGIN role per grant, gone without a trace at the end.

Issue creates the login with one statement, so a failure leaves no half-created login. The
``member_of`` roles are checked first: they must exist, and neither they nor any role they
belong to may have SUPERUSER or CREATEROLE (either would let the login leave standing access
behind). Then ``CREATE ROLE <login> LOGIN PASSWORD <verifier> VALID UNTIL <expires_at> IN ROLE ...``.
The password becomes a SCRAM-SHA-256 verifier on the broker, so the cleartext never reaches the
server, whose log records failing statements. ``VALID UNTIL`` binds password authentication only;
the broker's revocation is what really ends the login.

Managed databases give no superuser, only CREATEROLE. On PostgreSQL 15 such an admin may drop a
role it created, but may neither terminate that role's sessions nor REASSIGN/DROP OWNED it without
the privileges of that role; PostgreSQL 16 makes the creator a member WITH ADMIN OPTION but without
INHERIT, which is not enough either. So revoke starts with ``GRANT <login> TO CURRENT_USER``
when the admin lacks those privileges. Not earlier, at issue: every membership the admin holds
makes the server's privilege checks for the admin slower (it recomputes the admin's membership
closure after each change): with a thousand live logins a revocation took 2.5 times as long.

Revoke is idempotent (a login already gone is revoked) and safe to retry after any failure:
``NOLOGIN`` (committed first, so no new session starts), terminate the login's sessions on every
database, then in each database where it may own things ``REASSIGN OWNED BY`` it to the configured
owner and ``DROP OWNED BY`` it (removing its privileges, sequences included, and its default
privileges), and finally ``DROP ROLE`` — in the DSN's own database in the same transaction as its
cleanup there.

Statements that belong to one transaction go to the server as one message (the simple query
protocol runs them as one implicit transaction): one round trip and one commit, which is what a
burst of expiries waits on.

Admin connections are pooled (``AdminPool``, a few per target and database): opening one costs
more than the statements themselves. A lent connection that failed in any way is closed, not
reused; an idle one whose server closed it is noticed before use; TCP keepalives and
``tcp_user_timeout`` keep a silently vanished server from hanging a pooled connection. A connect
that reaches no server raises ``TargetUnreachable`` (see ``dsn``); libpq reports only text, so
that is told from its messages (``NO_SERVER_ANSWER``).

Target options:
    reassign_to        role that receives what the login created (default: the admin role);
                       the admin must be a member of it.
    databases          other databases of the same server to clean too: REASSIGN/DROP OWNED act
                       on one database at a time, and the DSN's own database is always cleaned.
    connect_timeout    seconds to wait for the server (default 5).
    admin_connections  admin connections kept open per database (default 4, at most 32).

The credential handed out connects to ``target.address``/``target.port`` when set, else to the
host and port of the admin DSN.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from jitgate.errors import ProviderError, TargetUnreachable
from jitgate.policy.model import PostgresAccess, Role, Target
from jitgate.providers import postgres_objects as objects
from jitgate.providers.base import CredentialProvider, Health, Issued, IssueRequest, ProviderContext
from jitgate.providers.dsn import (
    POOL_SIZE,
    PooledProvider,
    admin_dsn,
    checked_login,
    new_login,
    pool_size_problem,
    scrub,
    socket_readable,
)

log = logging.getLogger(__name__)

KIND = "postgres"
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DATABASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
RESERVED_ROLES = frozenset({"public", "none", "current_user", "current_role", "session_user"})
# Members of these may read or write any server file or run programs as the server's OS user:
# superuser in all but name, whatever the role's own attributes say.
SERVER_ACCESS_ROLES = frozenset(
    {"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"}
)
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
TERMINATE_WAIT_MS = 5000
TERMINATE_ROUNDS = 3

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class _Settings:
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


class PostgresProvider(PooledProvider[Connection]):
    """Ephemeral PostgreSQL logins. One instance serves every thread; it pools admin connections."""

    kind = KIND
    revocable = True

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ, alive=_alive, reusable=_reusable, close=_close)

    def validate(self, role: Role, target: Target) -> list[str]:
        """Problems of ``role`` on ``target`` found without a server: names, target options."""
        problems = _option_problems(target)
        if role.postgres is not None:
            for name in role.postgres.member_of:
                problem = _role_problem(name, target)
                if problem:
                    problems.append(f"role {role.name}: postgres.member_of {problem}")
        return problems

    @contextmanager
    def _admin(self, settings: _Settings, target: Target, dbname: str | None = None) -> Iterator[Connection]:
        with self._pool.connection(
            (target.name, dbname),
            settings.dsn,
            lambda: _connect(settings, target, dbname),
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
        member_of = tuple(dict.fromkeys(_role_name(name, target) for name in role.postgres.member_of))
        expires_at = request.grant.expires_at
        if expires_at <= request.now:
            raise ProviderError(f"grant {request.grant.id} has already expired")
        settings = _settings(self._environ, target)
        password = secrets.token_urlsafe(32)
        with (
            self._admin(settings, target) as conn,
            _reported(target, f"creating login {login}", settings, password),
        ):
            _check_member_of(conn, member_of, target)
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
        settings = _settings(self._environ, target)
        with self._admin(settings, target) as conn, _reported(target, f"revoking login {login}", settings):
            privileged = _privileges_of(conn, login)
            if privileged is None:
                log.debug("login %s on target %s is already gone", login, target.name)
                return None
            try:
                lock = sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(login))
                if not privileged:
                    lock += sql.SQL("; GRANT {} TO CURRENT_USER").format(sql.Identifier(login))
                conn.execute(lock)
                _terminate_sessions(conn, login, target)
                outcome, owner = _objects_outcome(conn, login, settings, target)
                here = conn.info.dbname
                elsewhere = [
                    db
                    for db in dict.fromkeys(
                        (*settings.databases, *objects.databases_with_traces(conn, login))
                    )
                    if db != here
                ]
                for database in elsewhere:
                    with (
                        self._admin(settings, target, database) as other,
                        _reported(target, f"cleaning login {login} in database {database}", settings),
                    ):
                        _clean(other, login, owner, settings, target)
                _clean(conn, login, owner, settings, target, and_role=True)
            except pg_errors.UndefinedObject:
                # Another broker replica may have finished this revocation meanwhile.
                if _role_exists(conn, login):
                    raise
                return None
        log.info("revoked login %s on target %s; its objects %s", login, target.name, outcome["objects"])
        return {**outcome, "databases": sorted({here, *elsewhere})}

    def check(self, target: Target) -> Health:
        """Reachable, an admin that can create roles, and a ``reassign_to`` owner that is harmless."""
        unsafe = None
        try:
            settings = _settings(self._environ, target)
            with self._admin(settings, target) as conn, _reported(target, "health check", settings):
                row = conn.execute(
                    "SELECT current_user, rolsuper OR rolcreaterole, current_setting('server_version')"
                    " FROM pg_roles WHERE rolname = current_user"
                ).fetchone()
                if settings.reassign_to is not None:
                    unsafe = objects.owner_problem(conn, settings.reassign_to)
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


def _role_name(name: str, target: Target) -> str:
    problem = _role_problem(name, target)
    if problem:
        raise ProviderError(problem)
    return name


def _role_problem(name: str, target: Target) -> str | None:
    if not ROLE_NAME.fullmatch(name):
        return (
            f"role name {name!r} for target {target.name} would need quoting; use lowercase letters, "
            "digits and _"
        )
    if name in RESERVED_ROLES:
        return f"role name {name!r} for target {target.name} is reserved by PostgreSQL"
    if name in SERVER_ACCESS_ROLES:
        return f"role {name} on target {target.name} gives access to the server's files or programs"
    return None


def _settings(environ: Mapping[str, str], target: Target) -> _Settings:
    problems = _option_problems(target)
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
    return _Settings(
        dsn=dsn,
        params=params,
        password=str(password) if password else None,
        reassign_to=None if reassign_to is None else str(reassign_to),
        databases=tuple(options.get("databases", ())),
        connect_timeout=int(options.get("connect_timeout", 5)),
        admin_connections=int(options.get("admin_connections", POOL_SIZE)),
    )


def _option_problems(target: Target) -> list[str]:
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
        elif problem := _role_problem(reassign_to, target):
            problems.append(f"{where}: reassign_to {problem}")
        elif reassign_to.startswith("pg_") or reassign_to == "postgres":
            problems.append(
                f"{where}: reassign_to {reassign_to} is a built-in role; name a role with no special"
                " powers that exists only to own what logins leave behind"
            )
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


def _connect(settings: _Settings, target: Target, dbname: str | None = None) -> Connection:
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
            f"postgres target {target.name}: cannot connect{where}: {_reason(exc, settings.secrets)}"
        ) from None
    try:
        # A revoke waiting on a lock held elsewhere fails and is retried rather than hanging.
        conn.execute("SET lock_timeout = '10s'")
    except psycopg.Error as exc:
        conn.close()
        raise ProviderError(
            f"postgres target {target.name}: cannot configure session: {_reason(exc, settings.secrets)}"
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


def _alive(conn: Connection) -> bool:
    return not conn.closed and not conn.broken and not socket_readable(conn.fileno())


def _reusable(conn: Connection) -> bool:
    return not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE


def _close(conn: Connection) -> None:
    conn.close()


@contextmanager
def _reported(target: Target, action: str, settings: _Settings, *secrets: str) -> Iterator[None]:
    """Turn a driver error into a one-line ``ProviderError`` with no secret and no chained cause."""
    try:
        yield
    except psycopg.Error as exc:
        reason = _reason(exc, (*settings.secrets, *secrets))
        raise ProviderError(f"postgres target {target.name}: {action} failed: {reason}") from None


def _reason(exc: psycopg.Error, secrets: Sequence[str]) -> str:
    text = exc.diag.message_primary or str(exc)
    detail = exc.diag.message_detail
    if isinstance(exc, pg_errors.DependentObjectsStillExist) and detail:
        lines = detail.splitlines()
        more = f" and {len(lines) - 1} more" if len(lines) > 1 else ""
        hints = []
        if any(line.startswith("privileges for") for line in lines):
            hints.append("the admin needs the privileges of whoever granted them, e.g. the object owner")
        if any(" in database " in line for line in lines):
            hints.append("list the other database under options.databases")
        text += f" ({'; '.join([lines[0] + more, *hints])})"
    return scrub(text, secrets)


def _check_member_of(conn: Connection, names: Sequence[str], target: Target) -> None:
    """Refuse ``names`` that do not exist or that have or inherit SUPERUSER or CREATEROLE."""
    rows = conn.execute(
        "SELECT r.rolname, EXISTS (SELECT 1 FROM pg_roles s WHERE (s.rolsuper OR s.rolcreaterole)"
        " AND pg_has_role(r.oid, s.oid, 'MEMBER')) FROM pg_roles r WHERE r.rolname = ANY(%s)",
        [list(names)],
    ).fetchall()
    found: dict[str, bool] = {str(row[0]): bool(row[1]) for row in rows}
    for name in names:
        if name not in found:
            raise ProviderError(f"role {name} does not exist on target {target.name}")
        if found[name]:
            raise ProviderError(
                f"role {name} on target {target.name} has or inherits SUPERUSER or CREATEROLE; "
                "jitgate will not hand it out"
            )


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


def _terminate_sessions(conn: Connection, login: str, target: Target) -> None:
    left = 0
    for _ in range(TERMINATE_ROUNDS):
        conn.execute(
            "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity"
            " WHERE usename = %s AND pid <> pg_backend_pid()",
            [TERMINATE_WAIT_MS, login],
        )
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()", [login]
        ).fetchone()
        left = int(row[0]) if row else 0
        if not left:
            return
    raise ProviderError(f"postgres target {target.name}: {left} session(s) of login {login} did not end")


def _objects_outcome(
    conn: Connection, login: str, settings: _Settings, target: Target
) -> tuple[dict[str, Any], str | None]:
    """Drop the login's objects, or reassign them to ``reassign_to`` if it is harmless right now."""
    owner = settings.reassign_to
    if owner is None:
        return {"objects": "dropped"}, None
    problem = objects.owner_problem(conn, owner)
    if problem is None:
        return {"objects": "reassigned", "reassign_to": owner}, owner
    log.warning(
        "target %s: not reassigning what login %s created: %s; dropping it", target.name, login, problem
    )
    return {"objects": "dropped", "reassign_to": owner, "reassign_refused": problem}, None


def _clean(
    conn: Connection,
    login: str,
    owner: str | None,
    settings: _Settings,
    target: Target,
    *,
    and_role: bool = False,
) -> None:
    """Leave nothing of ``login`` in the connection's database (and DROP ROLE), in one transaction."""
    try:
        conn.execute(objects.cleanup_statement(conn, login, owner, and_role=and_role))
    except pg_errors.InsufficientPrivilege as exc:
        reason = _reason(exc, settings.secrets)
        if "drop role" in reason:
            raise
        raise ProviderError(
            f"postgres target {target.name}: cleaning up login {login} in database {conn.info.dbname} was"
            f" refused: {reason} (the admin needs the privileges of whoever granted the login rights,"
            " e.g. the object owner)"
        ) from None


def _user_dsn(user: str, password: str, host: str, port: int, database: str) -> str:
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    if host.startswith("/"):
        query = f"host={quote(host, safe='')}&port={port}"
        return f"postgresql://{credentials}@/{quote(database, safe='')}?{query}"
    netloc = f"[{host}]" if ":" in host else host
    return f"postgresql://{credentials}@{netloc}:{port}/{quote(database, safe='')}"
