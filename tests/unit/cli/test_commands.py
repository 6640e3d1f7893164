"""The command table that lets ``jitgate CMD`` load one module is the full application's own list:
same names in the same order, same modules, same help; and every command still answers ``--help``."""

from __future__ import annotations

from typing import Any

import pytest
import typer
import typer.main

from jitgate.cli import commands
from jitgate.cli.entry import main
from jitgate.cli.main import app


def full_commands() -> dict[str, Any]:
    return dict(typer.main.get_group(app).commands)


def first_paragraph(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())


def defining_module(command: Any) -> str:
    """The module whose ``register`` adds ``command``: its callback's, or for a group its commands'."""
    if command.callback is not None and getattr(command.callback, "__module__", "").startswith("jitgate."):
        return str(command.callback.__module__)
    modules = {defining_module(inner) for inner in command.commands.values()}
    assert len(modules) == 1, modules
    return modules.pop()


def test_the_table_names_every_command_of_the_full_application_in_its_order() -> None:
    assert list(commands.COMMANDS) == list(full_commands())


def test_the_table_knows_the_module_and_help_of_each_command() -> None:
    for name, command in full_commands().items():
        entry = commands.COMMANDS[name]
        assert (name, entry.module) == (name, defining_module(command))
        assert (name, entry.help) == (name, first_paragraph(command.help))


def test_the_root_help_is_the_full_applications() -> None:
    assert app.info.help == commands.HELP


def test_jitgate_help_reads_as_the_full_application_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as lazy:
        main(["--help"])
    lazy_help = capsys.readouterr().out
    with pytest.raises(SystemExit) as full:
        app(args=["--help"], prog_name="jitgate")
    assert (lazy.value.code, lazy_help) == (full.value.code, capsys.readouterr().out)
    assert lazy.value.code == 0


def every_command_line() -> list[list[str]]:
    lines = []
    for name, command in full_commands().items():
        lines.append([name])
        lines.extend([name, inner] for inner in getattr(command, "commands", {}))
    return lines


@pytest.mark.parametrize("words", every_command_line(), ids=" ".join)
def test_every_command_answers_its_help_as_in_the_full_application(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as lazy:
        main([*words, "--help"])
    shown = capsys.readouterr()
    assert lazy.value.code == 0, shown.err
    assert f"Usage: jitgate {' '.join(words)}" in " ".join(shown.out.split())
    with pytest.raises(SystemExit):
        app(args=[*words, "--help"], prog_name="jitgate")
    assert shown.out == capsys.readouterr().out


def test_a_mistyped_command_is_answered_with_the_nearest_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["rols"])
    assert done.value.code == 2
    assert "Did you mean 'roles'?" in capsys.readouterr().err
