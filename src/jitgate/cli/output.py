"""Printing: Rich tables for people, JSON for scripts, one line on stderr for every error.

Everything shown comes from data others typed, so it is never read as Rich markup and never
reaches the terminal as a control character: cells and lines are ``Text`` (no markup), and
``printable`` turns escapes, bidi overrides and other invisible characters into visible ``\\x1b``
style escapes, also for records older than the broker's input check.

Rich is loaded only when something is printed through it (a table, ``out``/``err``): a line of text
or an error goes straight to the stream, so that a command answering in one line does not pay for
it. ``out`` and ``err`` become Rich consoles when first printed through.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from jitgate import errors
from jitgate.cli.exitcodes import exit_code
from jitgate.domain.text import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    out: Console
    err: Console

_consoles: dict[str, Console] = {}


def rich_console(name: str) -> Console:
    """``out`` (stdout) or ``err`` (stderr) as a Rich console, made the first time it is needed."""
    if name not in _consoles:
        from rich.console import Console

        if name == "out":
            # Piped output is read by other programs and by people scrolling logs: never cut it at 80 columns.
            _consoles[name] = Console(width=None if sys.stdout.isatty() else 250)
        else:
            _consoles[name] = Console(stderr=True, highlight=False, soft_wrap=True)
    return _consoles[name]


class _Deferred:
    """Stands in for ``out`` or ``err`` until something is printed through it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(rich_console(self._name), attribute)


if not TYPE_CHECKING:
    out = _Deferred("out")
    err = _Deferred("err")


def safe(value: object) -> Text:
    """Data as inert text: no markup, no control or invisible characters."""
    from rich.text import Text

    return Text("" if value is None else printable(str(value)))


def say(message: str, console: Console | None = None) -> None:
    """Print one message that may carry data (names, reasons, server messages); stdout by default."""
    if console is None:
        sys.stdout.write(printable(message) + "\n")
    else:
        console.print(safe(message), highlight=False)


def fail(exc: errors.JitgateError) -> NoReturn:
    """The error as one line on stderr, and the exit code its kind stands for."""
    import typer

    sys.stderr.write(printable(f"error: {exc.message}") + "\n")
    raise typer.Exit(exit_code(exc))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    grid = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        grid.add_column(column, no_wrap=index == 0, overflow="fold")
    for row in rows:
        grid.add_row(*(safe(v) for v in row))
    rich_console("out").print(grid)


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
