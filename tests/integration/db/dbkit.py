"""Helpers for the database-provider tests: server access, per-run names, targets and providers,
requests, logging in as an issued login, a TCP proxy."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pymysql
from psycopg import sql

from jitgate.clock import SystemClock
from jitgate.domain.identity import Identity
from jitgate.domain.model import Grant, RequestState
from jitgate.policy.model import MariadbAccess, PostgresAccess, Role, Target, TargetSelector
from jitgate.providers import mariadb, postgres
from jitgate.providers.base import CredentialProvider, Issued, IssueRequest, ProviderContext
from support import component_missing

PG_HOST, PG_PORT = "127.0.0.1", 5432
MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306
PG_ENV = "JG_TEST_PG_ADMIN_DSN"
MARIADB_ENV = "JG_TEST_MARIADB_ADMIN_DSN"


def unreachable(what: str, exc: Exception) -> NoReturn:
    """Skip locally; under ``CI=true`` fail, so a missing server can never pass quietly."""
    message = f"{what} is not reachable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    component_missing(message)


def pg_superuser(dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname=dbname, autocommit=True)


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


@dataclass(frozen=True)
class PgEnv:
    suffix: str
    database: str
    other_database: str
    admin: str
    admin_password: str
    readonly: str
    creator: str
    owner: str

    def admin_dsn(self, port: int = PG_PORT) -> str:
        return f"postgresql://{self.admin}:{self.admin_password}@{PG_HOST}:{port}/{self.database}"

    def superuser(self, database: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        return pg_superuser(database or self.database)


@dataclass(frozen=True)
class MariadbEnv:
    suffix: str
    database: str
    admin: str
    admin_password: str
    readonly: str

    def admin_dsn(self) -> str:
        return f"mysql://{self.admin}:{self.admin_password}@{MARIADB_HOST}:{MARIADB_PORT}/{self.database}"


def mariadb_root() -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", autocommit=True)


def leftover_mariadb_logins() -> list[str]:
    """Every ``jit_`` user on the server; tests compare before and after."""
    with mariadb_root() as root, root.cursor() as cur:
        cur.execute("SELECT User FROM mysql.user WHERE User LIKE 'jit\\_%%'")
        return [str(row[0]) for row in cur.fetchall()]


def provider_context(tmp_path: Path, environ: dict[str, str]) -> ProviderContext:
    return ProviderContext(data_dir=tmp_path, environ=environ, clock=SystemClock())


def pg_target(**options: Any) -> Target:
    return Target(name="orders-db", kind="postgres", admin_dsn_env=PG_ENV, options=options)


@contextlib.contextmanager
def pg_provider(env: PgEnv, tmp_path: Path) -> Iterator[postgres.PostgresProvider]:
    """The PostgreSQL provider on ``env``'s admin, closed (its pooled connections too) afterwards."""
    made = postgres.create_provider(provider_context(tmp_path, {PG_ENV: env.admin_dsn()}))
    assert isinstance(made, postgres.PostgresProvider)
    yield made
    made.close()


def mariadb_target(**options: Any) -> Target:
    return Target(name="shop-db", kind="mariadb", admin_dsn_env=MARIADB_ENV, options=options)


def mariadb_provider(env: MariadbEnv, tmp_path: Path) -> CredentialProvider:
    return mariadb.create_provider(provider_context(tmp_path, {MARIADB_ENV: env.admin_dsn()}))


def mariadb_login(
    issued: Issued, database: str | None = None
) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    """A connection as the issued login, to its own database or to ``database``."""
    secret = issued.secret
    return pymysql.connect(
        host=str(secret["host"]),
        port=int(secret["port"]),
        user=str(secret["user"]),
        password=str(secret["password"]),
        database=database or str(secret["database"]),
        autocommit=True,
    )


def pg_role(*member_of: str, connection_limit: int | None = None) -> Role:
    return Role(
        name="orders-read",
        targets=TargetSelector(names=("orders-db",)),
        postgres=PostgresAccess(member_of=member_of, connection_limit=connection_limit),
        max_duration=timedelta(hours=1),
        requesters=("group:analysts",),
        approval="auto",
    )


def mariadb_role(
    roles: tuple[str, ...] = (), privileges: tuple[str, ...] = (), connection_limit: int | None = None
) -> Role:
    return Role(
        name="shop-read",
        targets=TargetSelector(names=("shop-db",)),
        mariadb=MariadbAccess(roles=roles, privileges=privileges, connection_limit=connection_limit),
        max_duration=timedelta(hours=1),
        requesters=("group:analysts",),
        approval="auto",
    )


def issue_request(role: Role, target: Target, *, user: str = "alice", minutes: int = 30) -> IssueRequest:
    now = SystemClock().now()
    grant = Grant(
        id=f"g-{secrets.token_hex(4)}",
        request_id=f"r-{secrets.token_hex(4)}",
        holder=user,
        role=role.name,
        targets=(target.name,),
        starts_at=now,
        expires_at=now + timedelta(minutes=minutes),
        state=RequestState.ACTIVE,
    )
    return IssueRequest(
        grant=grant,
        role=role,
        target=target,
        identity=Identity(name=user, groups=frozenset({"analysts"})),
        now=now,
    )


class TcpProxy:
    """A loopback TCP forwarder the test can stop (the database "goes away") and start again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, args=(listener, self._stopped), daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                self._close(sock)
            self._sockets.clear()

    def _accept(self, listener: socket.socket, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update({client, server})
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            source.settimeout(None)
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
