"""The stored sign-in without a provider to ask: a fresh ID token is used as it is (and nothing
more is loaded for it), one near its end is still used while the provider cannot be reached, an
ended one without a way to refresh ends with one line; an API token in the environment wins;
logout deletes the login even when the provider cannot be reached."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jitgate import errors
from jitgate.cli.config import login_file, resolve, save_login
from jitgate.cli.oidc_session import ENDED, current_token, forget


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("JITGATE_TOKEN", raising=False)
    monkeypatch.delenv("JITGATE_URL", raising=False)
    return tmp_path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stored(ends_in: float, *, refresh: str | None = "rt-1") -> str:
    idp = f"http://127.0.0.1:{closed_port()}"  # nobody listens: the provider cannot be reached
    oidc = {
        "issuer": idp,
        "client_id": "jitgate-cli",
        "subject": "alice",
        "expires_at": int(time.time() + ends_in),
        "token_endpoint": f"{idp}/token",
        "jwks_uri": f"{idp}/jwks",
        "revocation_endpoint": f"{idp}/token/revocation",
    }
    if refresh is not None:
        oidc["refresh_token"] = refresh
    save_login("http://broker.test", "eyJ.stored.token", oidc=oidc)
    return "eyJ.stored.token"


def test_a_fresh_id_token_is_used_without_loading_the_refresh_code(config_home: Path) -> None:
    token = stored(3600)
    assert resolve(None, None) == ("http://broker.test", token)
    probe = (
        "import sys; from jitgate.cli.config import resolve; resolve(None, None); "
        "print('jitgate.cli.oidc_session' in sys.modules, 'jwt' in sys.modules)"
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_an_ended_id_token_without_a_refresh_token_ends_the_sign_in() -> None:
    stored(-5, refresh=None)
    with pytest.raises(errors.Unauthenticated) as raised:
        resolve(None, None)
    assert raised.value.message == ENDED == "your sign-in has ended; run jitgate login --oidc"


def test_a_token_near_its_end_is_still_used_while_the_provider_cannot_be_reached() -> None:
    token = stored(30)
    assert current_token() == token
    token = stored(30, refresh=None)
    assert current_token() == token


def test_an_ended_token_with_the_provider_unreachable_says_so() -> None:
    stored(-5)
    with pytest.raises(errors.StorageUnavailable, match="cannot reach the identity provider"):
        resolve(None, None)


def test_an_api_token_in_the_environment_wins_over_an_ended_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    stored(-5)
    monkeypatch.setenv("JITGATE_TOKEN", "jg_from_the_environment")
    assert resolve(None, None) == ("http://broker.test", "jg_from_the_environment")
    assert resolve(None, "jg_flag") == ("http://broker.test", "jg_flag")


def test_the_login_file_and_its_directory_are_private() -> None:
    stored(3600)
    assert stat.S_IMODE(login_file().stat().st_mode) == 0o600
    assert stat.S_IMODE(login_file().parent.stat().st_mode) == 0o700


def test_logout_deletes_the_login_even_when_the_provider_cannot_be_reached() -> None:
    stored(3600)
    notes = forget()
    assert not login_file().exists()
    assert len(notes) == 1
    assert notes[0].startswith("could not revoke the refresh token at the identity provider")
    assert "rt-1" not in notes[0]
    assert forget() == []  # nothing stored: nothing to do
