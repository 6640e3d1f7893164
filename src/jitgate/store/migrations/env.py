"""Alembic environment: runs against the connection the broker hands it (see ``store/migrate.py``)."""

from __future__ import annotations

from alembic import context

from jitgate.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through jitgate.store.migrate, which passes a connection")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
