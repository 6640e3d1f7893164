"""Printing: Rich tables for people, JSON for scripts, one line on stderr for every error.

Everything shown comes from data others typed, so it is never read as Rich markup and never
reaches the terminal as a control character: cells and lines are ``Text`` (no markup), and
``printable`` turns escapes, bidi overrides and other invisible characters into visible ``\\x1b``
style escapes, also for records older than the broker's input check.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jitgate import errors
from jitgate.cli.exitcodes import exit_code
from jitgate.domain.text import printable

# Piped output is read by other programs and by people scrolling logs: never cut it at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def safe(value: object) -> Text:
    """Data as inert text: no markup, no control or invisible characters."""
    return Text("" if value is None else printable(str(value)))


def say(message: str, console: Console = out) -> None:
    """Print one message that may carry data (names, reasons, server messages)."""
    console.print(safe(message), highlight=False)


def fail(exc: errors.JitgateError) -> NoReturn:
    say(f"error: {exc.message}", err)
    raise typer.Exit(exit_code(exc))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        grid.add_column(column, no_wrap=index == 0, overflow="fold")
    for row in rows:
        grid.add_row(*(safe(v) for v in row))
    out.print(grid)


def left(seconds: int | None) -> str:
    if not seconds:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def when(text: str | None) -> str:
    if not text:
        return "-"
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
