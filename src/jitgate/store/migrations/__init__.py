"""Alembic migrations, shipped inside the package so a wheel can upgrade its own database."""
