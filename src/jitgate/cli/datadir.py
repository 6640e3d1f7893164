"""What the commands that work on a broker's data directory share: its options, its settings, and
the name they act under in the audit log."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jitgate import errors

if TYPE_CHECKING:
    from jitgate.settings import Settings

DataDirOpt = Annotated[
    Path,
    typer.Option("--data-dir", envvar="JITGATE_DATA_DIR", metavar="DIR", help="Broker data directory"),
]
DbUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="JITGATE_DATABASE_URL",
        metavar="URL",
        help="Database URL (default SQLite in the data directory)",
    ),
]


def data_settings(data_dir: Path, database_url: str | None, **extra: Any) -> Settings:
    """Settings for ``data_dir``; bad values are one line of bad input naming each setting (the
    flag when one was given, else its ``JITGATE_*`` variable), never a validation dump."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from jitgate.settings import Settings

    values = {k: v for k, v in extra.items() if v is not None}
    try:
        return Settings(data_dir=data_dir, database_url=database_url, **values)
    except ValidationError as exc:
        # A value typed as a flag is named by the flag; one Typer took from JITGATE_* by its variable.
        passed = {"data_dir": data_dir, "database_url": database_url, **values}
        given = {
            name
            for name, value in passed.items()
            if value is not None and str(value) != os.environ.get(f"JITGATE_{name.upper()}")
        }
        problems = [_problem(error, given) for error in exc.errors(include_url=False)]
        raise errors.InvalidInput("; ".join(problems)) from None
    except SettingsError as exc:  # a variable that is not even the right shape (e.g. not JSON)
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"JITGATE_{found.group(1).upper()}" if found else "a JITGATE_* variable"
        raise errors.InvalidInput(f'{name}: cannot be parsed (a list is JSON, e.g. ["a", "b"])') from None


_SAYS = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "string_pattern_mismatch": "must match {pattern}",
    "list_type": "must be a list",
    "path_type": "must be a file path",
}

_FLAGS = {"policy_file": "--policy"}


def _problem(error: Mapping[str, Any], given: set[str]) -> str:
    """One validation error as ``NAME: what is wrong``."""
    message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    template = _SAYS.get(str(error.get("type")))
    if template is not None:
        message = template.format(**(error.get("ctx") or {}))
    location = error.get("loc") or ()
    if not location:  # a rule across fields: its message names the variables itself
        return message
    field = str(location[0])
    flag = _FLAGS.get(field, f"--{field.replace('_', '-')}")
    name = flag if field in given else f"JITGATE_{field.upper()}"
    return f"{name}: {message}"


def require_existing(settings: Settings) -> None:
    """Refuse to work on a broker that is not there (rather than create an empty one)."""
    if settings.database_url is None and not (settings.data_dir / "jitgate.db").exists():
        raise errors.NotFound(f"no broker database in {settings.data_dir}")


def local_actor() -> str:
    """Who runs an offline admin command, as the audit log names them: never a user's name."""
    return f"local:{os.environ.get('USER') or 'unknown'}"
