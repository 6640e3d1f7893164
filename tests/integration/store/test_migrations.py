"""Schema changes go through Alembic: one head, the migrations build exactly the tables the code
declares (``alembic check``), and they go down and up again — on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from jitgate.store.migrate import alembic_config, downgrade, upgrade
from jitgate.store.tables import metadata
from support import PG_ADMIN_URL, component_missing


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        created = sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield created
        created.dispose()
        return
    name = f"jg_mig_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError:
        component_missing("PostgreSQL")
    created = sa.create_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    yield created
    created.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


def test_there_is_exactly_one_head(engine: sa.Engine) -> None:
    script = ScriptDirectory.from_config(alembic_config(engine))
    assert len(script.get_heads()) == 1


def test_migrations_build_what_the_code_declares(engine: sa.Engine) -> None:
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= {t.name for t in metadata.sorted_tables}
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.check(config)  # raises if the models and the migrations disagree


def test_migrations_round_trip(engine: sa.Engine) -> None:
    upgrade(engine)
    downgrade(engine, "base")
    assert not {t.name for t in metadata.sorted_tables} & set(sa.inspect(engine).get_table_names())
    upgrade(engine)
    upgrade(engine)  # idempotent at head
    assert {t.name for t in metadata.sorted_tables} <= set(sa.inspect(engine).get_table_names())
