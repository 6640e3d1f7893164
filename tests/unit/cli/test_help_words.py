"""Every command's ``--help`` says what each value is in words, never as a Python type."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from jitgate.cli.main import app

TYPE_NAMES = re.compile(
    r"\b(TEXT|INTEGER|FLOAT|PATH|BOOLEAN|FILENAME|DATETIME|UUID)\b"
    r"|<(str|int|float|bool|Path|list\[[^]]*\]|datetime)>|<class"
)


def commands() -> Iterator[tuple[list[str], object]]:
    def walk(command: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


COMMANDS = {" ".join(path) or "jitgate": command for path, command in commands()}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_names_values_in_words(name: str) -> None:
    path = [] if name == "jitgate" else name.split()
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert shown.exit_code == 0, shown.output
    assert "Usage: jitgate" in shown.output
    leaked = [line.strip() for line in shown.output.splitlines() if TYPE_NAMES.search(line)]
    assert leaked == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_visible_option_and_argument_has_help_and_a_word(name: str) -> None:
    params = [p for p in getattr(COMMANDS[name], "params", []) if not getattr(p, "hidden", False)]
    missing = [p.name for p in params if p.name != "help" and not getattr(p, "help", None)]
    assert missing == []
    unnamed = [
        p.name
        for p in params
        if p.name not in {"help", "url"} and not getattr(p, "is_flag", False) and p.metavar is None
    ]
    assert unnamed == []


def test_a_flag_shows_no_value_and_an_option_its_word() -> None:
    shown = CliRunner().invoke(app, ["request", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    lines = {line.split()[1]: line for line in shown.output.splitlines() if line.strip().startswith("│ --")}
    assert lines["--json"].split()[2] == "Print"
    assert lines["--for"].split()[2] == "DURATION"
    assert "{ROLE}" in shown.output
