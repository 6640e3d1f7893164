"""Writers to one SQLite file take turns across processes, without SQLite's sleeping busy loop.

A second open file description of the turns file stands in for another broker process: advisory
locks on separate descriptions exclude each other exactly as they do between processes.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jitgate.errors import StorageUnavailable
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade


@contextmanager
def other_process_writing(database: Path) -> Iterator[None]:
    fd = os.open(database.with_name(database.name + ".writer-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _database(tmp_path: Path, timeout: float) -> tuple[Database, Path]:
    path = tmp_path / "jitgate.db"
    db = Database(f"sqlite:///{path}", busy_timeout=timeout)
    upgrade(db.engine)
    return db, path


def test_a_writer_waits_for_its_turn_and_writes_as_soon_as_the_other_is_done(tmp_path: Path) -> None:
    db, path = _database(tmp_path, timeout=30)
    wrote = threading.Event()

    def write() -> None:
        with db.write() as conn:
            conn.exec_driver_sql("SELECT 1")
        wrote.set()

    with other_process_writing(path):
        writer = threading.Thread(target=write)
        writer.start()
        assert not wrote.wait(0.3), "wrote while another process held the turn"
    assert wrote.wait(5), "did not write once the turn was free"
    writer.join()
    db.dispose()


def test_no_turn_within_the_busy_timeout_is_a_one_line_refusal_and_nothing_stays_locked(
    tmp_path: Path,
) -> None:
    db, path = _database(tmp_path, timeout=0.2)

    with other_process_writing(path), pytest.raises(StorageUnavailable) as refused, db.write() as conn:
        conn.exec_driver_sql("SELECT 1")

    assert "locked by another process" in refused.value.message
    assert "\n" not in refused.value.message
    with db.write() as conn:  # neither this process's lock nor the file's is left held
        conn.exec_driver_sql("SELECT 1")
    db.dispose()


def test_the_turns_file_sits_next_to_the_database_and_is_private(tmp_path: Path) -> None:
    db, path = _database(tmp_path, timeout=1)
    with db.write() as conn:
        conn.exec_driver_sql("SELECT 1")

    turns = path.with_name("jitgate.db.writer-lock")
    assert turns.exists()
    assert turns.stat().st_mode & 0o777 == 0o600
    db.dispose()


def test_the_broker_database_and_its_log_files_are_private(tmp_path: Path) -> None:
    from jitgate.runtime import open_database
    from jitgate.settings import Settings

    db = open_database(Settings(data_dir=tmp_path / "data"))
    with db.write() as conn:  # the write-ahead log and its index exist while connections are open
        conn.exec_driver_sql("SELECT 1")
    files = sorted((tmp_path / "data").glob("jitgate.db*"))
    assert {f.name for f in files} >= {"jitgate.db", "jitgate.db-wal", "jitgate.db-shm"}
    assert {f.name: f.stat().st_mode & 0o777 for f in files} == dict.fromkeys((f.name for f in files), 0o600)
    db.dispose()
