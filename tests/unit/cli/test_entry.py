"""``jitgate --version`` answers at once, before the command line loads; ``jitgate ssh`` reads its
options without it, exactly as the full ``ssh`` command would, or hands over to it."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer.main

from jitgate import __version__
from jitgate.cli import entry
from jitgate.cli.main import app


def test_version_is_one_line_and_exit_zero() -> None:
    for flag in ("--version", "-V"):
        done = subprocess.run(
            [sys.executable, "-m", "jitgate", flag], capture_output=True, text=True, timeout=30, check=False
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, f"jitgate {__version__}\n", "")


def ssh_command() -> Any:
    return typer.main.get_group(app).commands["ssh"]


def test_the_ssh_fast_path_knows_every_option_of_the_ssh_command() -> None:
    options = [p for p in ssh_command().params if p.param_type_name == "option" and p.name != "help"]
    assert {o for p in options if not p.is_flag for o in p.opts} == set(entry.VALUE_OPTIONS)
    assert {o for p in options if p.is_flag for o in p.opts} == set(entry.FLAGS)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["web-1"], {}),
        (["-l", "root", "web-1"], {"login": "root"}),
        (["web-1", "--login=deploy"], {"login": "deploy"}),
        (["-ldeploy", "web-1"], {"login": "deploy"}),
        (
            ["web-1", "-o", "ServerAliveInterval=5", "-oUser=x"],
            {"options": ["ServerAliveInterval=5", "User=x"]},
        ),
        (["--ssh-option=A=b", "web-1"], {"options": ["A=b"]}),
        (["web-1", "--url", "https://b", "--token=t"], {"url": "https://b", "token": "t"}),
        (["--unsafe-accept-unknown-host", "web-1"], {"accept_unknown_host": True}),
        (["--via-gateway", "web-1"], {"via_gateway": True}),
    ],
)
def test_the_ssh_fast_path_reads_options_as_the_full_command(
    words: list[str], expected: dict[str, Any]
) -> None:
    plain = {"login": None, "options": [], "url": None, "token": None}
    plain |= {"accept_unknown_host": False, "via_gateway": False}
    assert entry.ssh_arguments(words) == {"target": "web-1", **plain, **expected}


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["--help"],
        ["web-1", "-h"],
        ["web-1", "uptime"],
        ["web-1", "--login"],
        ["web-1", "-o", "-x"],
        ["web-1", "--verbose"],
        ["web-1", "--via-gateway=yes"],
        ["--via-gateway", "--unsafe-accept-unknown-host", "web-1"],
    ],
)
def test_anything_else_goes_to_the_full_command_to_be_explained(words: list[str]) -> None:
    assert entry.ssh_arguments(words) is None
