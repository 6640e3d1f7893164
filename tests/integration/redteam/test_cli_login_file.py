"""The command line's login file attacked by another local user who can write to the configuration
directory (``XDG_CONFIG_HOME`` on a shared disk, a directory left writable).

The login file names the broker every command talks to and the credential it presents; a file
planted there would send a person's commands, and what they type, to a broker of the planter's
choosing. A link planted beside it would have the command line create or lock a file elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jitgate import errors
from jitgate.cli.config import login_file, resolve, save_login
from jitgate.cli.oidc_session import login_lock
from support import component_missing

NOBODY = 65534
PLANTED = {"url": "https://broker.attacker.example", "token": "jg_" + "A" * 43}


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("JITGATE_URL", raising=False)
    monkeypatch.delenv("JITGATE_TOKEN", raising=False)
    directory = tmp_path / "jitgate"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    return directory


def plant(path: Path, *, mode: int = 0o600, owner: int | None = None) -> None:
    path.write_text(json.dumps(PLANTED))
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner, owner)


def test_a_login_file_planted_by_another_user_is_refused_not_believed(config_dir: Path) -> None:
    if os.geteuid() != 0:
        component_missing("giving a file to another user needs root, as the real-sshd tests do")
    plant(login_file(), owner=NOBODY)
    with pytest.raises(errors.InvalidInput, match="not a private file"):
        resolve(None, None)


def test_a_login_file_anyone_can_write_is_refused_not_believed(config_dir: Path) -> None:
    plant(login_file(), mode=0o666)
    with pytest.raises(errors.InvalidInput, match="not a private file"):
        resolve(None, None)


def test_a_login_file_that_is_a_link_is_refused_not_followed(config_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "planted.json"
    plant(elsewhere)
    login_file().symlink_to(elsewhere)
    with pytest.raises(errors.InvalidInput, match="symbolic link"):
        resolve(None, None)


def test_a_fifo_in_place_of_the_login_file_does_not_hold_the_command(config_dir: Path) -> None:
    os.mkfifo(login_file(), 0o600)
    with pytest.raises(errors.InvalidInput, match="not a private file"):
        resolve(None, None)


def test_a_lock_file_that_is_a_link_creates_nothing_where_it_points(config_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "victim" / "created-by-the-lock"
    target.parent.mkdir()
    login_file().with_name("login.json.lock").symlink_to(target)
    with pytest.raises(errors.InvalidInput, match="cannot be opened"), login_lock():
        pass
    assert not target.exists()


def test_the_persons_own_login_file_still_reads(config_dir: Path) -> None:
    save_login("https://broker.example", PLANTED["token"])
    assert resolve(None, None) == ("https://broker.example", PLANTED["token"])
    with login_lock():
        pass
