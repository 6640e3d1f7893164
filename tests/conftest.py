"""Shared fixtures: one suite on two databases (SQLite always, PostgreSQL too), a frozen clock,
a test policy, and a workflow context assembled the way the server assembles it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from jitgate.audit.chain import AuditLog
from jitgate.audit.keys import load_or_create_signing_key
from jitgate.clock import FrozenClock
from jitgate.policy.loader import parse_policy
from jitgate.policy.model import Policy
from jitgate.store.db import Database
from jitgate.store.migrate import upgrade
from jitgate.store.tables import metadata
from jitgate.workflow.context import PolicyHolder, WorkflowContext
from support import PG_ADMIN_URL, TEST_POLICY, component_missing


@pytest.fixture
def policy() -> Policy:
    return parse_policy(TEST_POLICY, "test-policy.yaml")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One PostgreSQL database per test session (per xdist worker), dropped afterwards."""
    name = f"jg_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError:
        admin.dispose()
        component_missing("PostgreSQL on 127.0.0.1:5432")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = sa.create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'jitgate.db'}")
        upgrade(database.engine)
    else:
        url = request.getfixturevalue("pg_database")
        database = Database(url)
        with database.engine.begin() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.exec_driver_sql(f"TRUNCATE {names} CASCADE")
    yield database
    database.dispose()


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(load_or_create_signing_key(tmp_path / "keys" / "audit.pem"))


@pytest.fixture
def ctx(db: Database, policy: Policy, audit: AuditLog, clock: FrozenClock) -> WorkflowContext:
    return WorkflowContext(db=db, policies=PolicyHolder(policy), audit=audit, clock=clock)
