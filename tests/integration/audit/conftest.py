"""Fixtures of the audit tests: each test runs on a SQLite file and on the local PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from jitgate.audit import keys
from jitgate.audit.chain import AuditLog
from jitgate.clock import FrozenClock
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.store.tables import audit_events, audit_head
from support import component_missing

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"jg_audit_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL at 127.0.0.1:5432 is unreachable: {str(exc.orig).splitlines()[0]}"
        component_missing(message)
    url = f"{PG_SERVER}/{name}"
    try:
        engine = sa.create_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'jitgate.db'}")
        upgrade(database.engine)
    else:
        database = Database(request.getfixturevalue("pg_url"))
        with database.engine.begin() as conn:
            conn.execute(audit_events.delete())
            conn.execute(audit_head.delete())
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(keys.load_for(tmp_path / "data"))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)
