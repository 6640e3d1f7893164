"""The engine and its transactions.

``write()`` opens one transaction that holds the write lock from its first statement: on SQLite
``BEGIN IMMEDIATE`` (WAL mode, so readers go on), on PostgreSQL the callers lock rows with
``FOR UPDATE``. Either way "lock, then check the state, then change it" holds. Database failures
leave as ``StorageUnavailable`` with one line that names the cause, never a stack of driver text.
Text holding a NUL character is refused (``InvalidInput``) before it reaches the database: the broker
never stores one, and PostgreSQL fails any statement that carries one, a mere look-up included.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from jitgate.errors import InvalidInput, StorageUnavailable

log = logging.getLogger("jitgate.store")

WAL_BACKSTOP_PAGES = 10_000
WAL_CHECKPOINT_SECONDS = 1.0
_AFTER_COMMIT = "jitgate_after_commit"
NUL_TEXT = "text with a NUL character (U+0000) is never stored, nor looked up"


def after_commit(conn: Connection, action: Callable[[], None]) -> None:
    """Run ``action`` once the ``write()`` transaction on ``conn`` has committed; never if it rolls back."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(action)


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
            # The connection used last has the warmest page cache: hand it out again first.
            kwargs["pool_use_lifo"] = True
        else:
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 16
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(url, **kwargs)
        self._checkpointed = 0.0
        self._writer: AbstractContextManager[object] = (
            SqliteWriterTurns(sqlite_path(url), busy_timeout) if self.is_sqlite else nullcontext()
        )
        if self.is_sqlite:
            _sqlite_setup(self.engine, int(busy_timeout * 1000))
        event.listen(self.engine, "before_cursor_execute", _refuse_nul)

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
                    try:
                        with conn.begin():
                            yield conn
                        committed = conn.info.pop(_AFTER_COMMIT, ())
                    finally:
                        conn.info.pop(_AFTER_COMMIT, None)  # it lives on the pooled connection
                    for action in committed:
                        action()
            except OperationalError as exc:
                raise storage_error(exc) from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise storage_error(exc) from None

    def checkpoint_wal(self) -> None:
        """Copy SQLite's write-ahead log into the database file, without waiting for anyone.

        PASSIVE: it neither waits for nor blocks writers; what it cannot copy now is copied the
        next time. At most once per ``WAL_CHECKPOINT_SECONDS``; nothing to do on PostgreSQL.
        """
        now = time.monotonic()
        if not self.is_sqlite or now - self._checkpointed < WAL_CHECKPOINT_SECONDS:
            return
        self._checkpointed = now
        try:
            with self.engine.connect() as conn:
                # On the driver's connection, outside any transaction (SQLAlchemy would begin one).
                conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        except (OperationalError, sqlite3.Error) as exc:
            log.warning("WAL checkpoint skipped: %s", exc)

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


def _refuse_nul(
    _conn: Connection, _cursor: Any, _statement: str, parameters: Any, _context: Any, executemany: bool
) -> None:
    """Refuse a statement whose text parameters hold a NUL: an id, a name or a filter from a URL
    or a body would otherwise be a 500 on PostgreSQL (and a refusal left unaudited)."""
    for row in parameters if executemany else (parameters,):
        values = row.values() if isinstance(row, Mapping) else row or ()
        for value in values:
            if type(value) is str and "\x00" in value:
                raise InvalidInput(NUL_TEXT)


def _sqlite_setup(engine: Engine, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints are the scheduler's job (``checkpoint_wal``), not the writer's: a writer
        # that checkpoints copies pages and syncs the disk while others wait for their turn.
        # This is the backstop if the scheduler falls behind: about 40 MiB of log.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: indexes of 100k+ grants stay in memory
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("jitgate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class SqliteWriterTurns:
    """Writers to one SQLite file take turns here, in this process and across processes.

    SQLite admits one writer; one that finds the lock taken falls into SQLite's busy handler,
    which sleeps 1, 2, 5, 10 … 100 ms between looks, so busy broker processes (``--workers``)
    would mostly wait on each other's sleeps. Threads queue on a lock; processes on an advisory
    lock on a file next to the database, where the kernel hands the lock to a waiter the moment
    its holder lets go, and a process that dies lets go by itself. Waiting is bounded by the busy
    timeout. Programs that do not take this lock (the sqlite3 shell) still meet SQLite's own.
    """

    def __init__(self, database: Path | None, timeout: float) -> None:
        self._threads = threading.Lock()
        self._path = _turns_file(database)
        self._timeout = timeout
        self._held: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            self._held = self._file_lock(self._path) if self._path is not None else None
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._held is not None:
                os.close(self._held)  # closing the descriptor releases its lock
                self._held = None
        finally:
            self._threads.release()

    def _file_lock(self, path: Path) -> int | None:
        """A descriptor holding the lock (the caller closes it to let go), or None without one."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # A read-only directory, say. The turns only spare waiting; SQLite's own lock still
            # keeps writers apart, and the write itself will say what is wrong.
            log.warning("writers take turns through SQLite alone: cannot open %s: %s", path, exc.strerror)
            self._path = None
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        # Wait in the kernel, on a helper thread so the wait can be given up. A lock the helper
        # gets after that is let go at once by closing its descriptor.
        got = threading.Event()
        gave_up = threading.Event()
        guard = threading.Lock()

        def wait() -> None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with guard:
                if gave_up.is_set():
                    os.close(fd)
                else:
                    got.set()

        threading.Thread(target=wait, name="jitgate-sqlite-turn", daemon=True).start()
        if got.wait(self._timeout):
            return fd
        with guard:
            if got.is_set():
                return fd
            gave_up.set()
        raise StorageUnavailable(
            f"the broker's database is locked by another process: no turn to write within {self._timeout:g}s"
        )


def _turns_file(database: Path | None) -> Path | None:
    """The lock file next to an SQLite database file (also one named by a ``file:`` URI)."""
    if database is None:
        return None
    name = database.name
    if str(database).startswith("file:"):
        database = Path(str(database).removeprefix("file:").partition("?")[0])
        name = database.name
    if name in ("", ":memory:") or "mode=memory" in str(database):
        return None
    return database.with_name(name + ".writer-lock")


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///"))
