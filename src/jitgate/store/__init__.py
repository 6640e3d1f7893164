"""Persistence: SQLAlchemy tables, the engine and its transactions, query functions, migrations."""
