"""What the commands that work on a broker's data directory share: its options, its settings, and
the name they act under in the audit log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jitgate import errors

if TYPE_CHECKING:
    from jitgate.settings import Settings

DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", envvar="JITGATE_DATA_DIR", help="Broker data directory")
]
DbUrlOpt = Annotated[
    str | None,
    typer.Option("--database-url", envvar="JITGATE_DATABASE_URL", help="Database URL (default SQLite)"),
]


def data_settings(data_dir: Path, database_url: str | None, **extra: Any) -> Settings:
    """Settings for ``data_dir``; a bad value is one line of bad input, not a validation dump."""
    from jitgate.settings import Settings

    values = {k: v for k, v in extra.items() if v is not None}
    try:
        return Settings(data_dir=data_dir, database_url=database_url, **values)
    except ValueError as exc:
        raise errors.InvalidInput(str(exc).splitlines()[-1].strip()) from None


def require_existing(settings: Settings) -> None:
    """Refuse to work on a broker that is not there (rather than create an empty one)."""
    if settings.database_url is None and not (settings.data_dir / "jitgate.db").exists():
        raise errors.NotFound(f"no broker database in {settings.data_dir}")


def local_actor() -> str:
    """Who runs an offline admin command, as the audit log names them: never a user's name."""
    return f"local:{os.environ.get('USER') or 'unknown'}"
