"""The engine and its transactions.

``write()`` opens one transaction that holds the write lock from its first statement: on SQLite
``BEGIN IMMEDIATE`` (WAL mode, so readers go on), on PostgreSQL the callers lock rows with
``FOR UPDATE``. Either way "lock, then check the state, then change it" holds. Database failures
leave as ``StorageUnavailable`` with one line that names the cause, never a stack of driver text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from jitgate.errors import StorageUnavailable


class Database:
    """One engine and the two kinds of transaction the broker uses."""

    def __init__(self, url: str, *, echo: bool = False, busy_timeout: float = 10.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 8
        else:
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 16
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(url, **kwargs)
        self._writer: AbstractContextManager[object] = threading.Lock() if self.is_sqlite else nullcontext()
        if self.is_sqlite:
            _sqlite_setup(self.engine, int(busy_timeout * 1000))

    @property
    def locks_rows(self) -> bool:
        """Whether ``SELECT … FOR UPDATE`` means anything here (SQLite locks the whole file instead)."""
        return not self.is_sqlite

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits when the block ends and rolls back on any error."""
        # SQLite admits one writer; threads that race for its lock fall into its busy handler,
        # which sleeps and polls. Queueing them on a lock here is fair and wastes no time.
        with self._writer:
            try:
                with self.engine.connect() as plain:
                    conn = plain.execution_options(jitgate_write=True)
                    with conn.begin():
                        yield conn
            except OperationalError as exc:
                raise storage_error(exc) from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise storage_error(exc) from None

    def dispose(self) -> None:
        self.engine.dispose()


def storage_error(exc: DBAPIError) -> StorageUnavailable:
    text = str(exc.orig).splitlines()[0] if exc.orig is not None else "unknown error"
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return StorageUnavailable(f"the broker's database is locked by another process: {text}")
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return StorageUnavailable(f"the broker's database is read-only: {text}")
    return StorageUnavailable(f"the broker's database failed: {text}")


def _sqlite_setup(engine: Engine, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: indexes of 100k+ grants stay in memory
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("jitgate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///"))
