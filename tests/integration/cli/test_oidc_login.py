"""``jitgate login --oidc`` end to end: the real ``jitgate`` command, a real ``jitgate server`` and
a real OpenID provider (oidc-provider), with the person's side driven over HTTP like a browser.

Device and browser sign-ins end in a stored ID token the broker accepts; the loopback callback
takes no answer with another state; the login file is 0600 and no token reaches the terminal;
an ID token near its end is refreshed (and the rotated refresh token kept) before the call; a
revoked sign-in ends with one line and exit code 4; logout revokes at the provider; an ID token
issued to another client is refused by the broker.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import jwt
import pytest

from support.broker_process import Process, broker
from support.oidcprovider import (
    CLI_CLIENT,
    OidcProvider,
    cli_client,
    confirm_device,
    sign_in,
    start_provider,
)

JITGATE = [sys.executable, "-m", "jitgate"]
OTHER_CLIENT = "another-app"
BROWSER_ONLY = "jitgate-cli-browser-only"
ENDED = "error: your sign-in has ended; run jitgate login --oidc\n"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    browser_only = cli_client(client_id=BROWSER_ONLY, grant_types=["authorization_code", "refresh_token"])
    clients = [cli_client(), cli_client(client_id=OTHER_CLIENT), browser_only]
    with start_provider(tmp_path_factory.mktemp("idp"), clients, device_interval=1) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, provider: OidcProvider) -> Iterator[Process]:
    env = {
        "JITGATE_OIDC_ISSUER": provider.issuer,
        "JITGATE_OIDC_JWKS_URL": provider.jwks_url,
        "JITGATE_OIDC_CLI_CLIENT_ID": CLI_CLIENT,
        "JITGATE_OIDC_CLI_SCOPES": "openid profile groups offline_access",
    }
    with broker(tmp_path_factory.mktemp("broker"), env) as running:
        yield running


@dataclass
class Person:
    """Someone at a terminal: a home of their own, nothing about jitgate in the environment."""

    home: Path

    @property
    def env(self) -> dict[str, str]:
        drop = {"JITGATE_URL", "JITGATE_TOKEN", "XDG_CONFIG_HOME", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER"}
        return {**{k: v for k, v in os.environ.items() if k not in drop}, "HOME": str(self.home)}

    @property
    def login_file(self) -> Path:
        return self.home / ".config" / "jitgate" / "login.json"

    def saved(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.login_file.read_text())
        return found

    def run(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JITGATE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**self.env, **(extra or {})},
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*JITGATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )

    def expire_stored_token(self) -> None:
        """Make the stored ID token look ended, as if its lifetime had passed."""
        saved = self.saved()
        saved["oidc"]["expires_at"] = int(time.time()) - 10
        self.login_file.write_text(json.dumps(saved))


@pytest.fixture
def person(tmp_path: Path) -> Person:
    return Person(tmp_path / "home")


def line_with(stream: IO[str], prefix: str, seen: list[str]) -> str:
    """The first line of ``stream`` (stripped) that starts with ``prefix``; earlier lines go to ``seen``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            raise AssertionError(f"the command ended before printing {prefix!r}: {''.join(seen)}")
        seen.append(line)
        if line.strip().startswith(prefix):
            return line.strip()
    raise AssertionError(f"no line starting with {prefix!r}")


def finished(process: subprocess.Popen[str], seen: list[str]) -> tuple[int, str, str]:
    out, rest = process.communicate(timeout=60)
    return process.returncode, out, "".join(seen) + rest


def device_login(
    person: Person, provider: OidcProvider, server: Process, *args: str, otp: str | None = None
) -> tuple[str, str]:
    process = person.start("login", "--oidc", "--url", server.url, *args)
    seen: list[str] = []
    assert process.stderr is not None
    complete = line_with(process.stderr, "or open ", seen).removeprefix("or open ")
    assert complete.startswith(f"{provider.issuer}/device?user_code=")
    confirm_device(provider, complete, "alice", otp=otp)
    code, out, err = finished(process, seen)
    assert code == 0, err
    return out, err


def browser_start(
    person: Person, provider: OidcProvider, server: Process, *choice: str
) -> tuple[subprocess.Popen[str], str, list[str]]:
    process = person.start("login", *(choice or ("--oidc", "--browser")), "--url", server.url)
    seen: list[str] = []
    assert process.stderr is not None
    address = line_with(process.stderr, f"{provider.issuer}/auth?", seen)
    return process, address, seen


def test_a_device_sign_in_stores_an_id_token_the_broker_takes_as_the_oidc_user(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    out, err = device_login(person, provider, server)
    assert f"logged in to {server.url} as oidc:alice" in out
    assert "enter the code" in err

    me = person.run("whoami", "--json")
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["name"] == "oidc:alice"
    assert set(json.loads(me.stdout)["groups"]) == {"engineers"}
    roles = person.run("roles", "--json")
    assert roles.returncode == 0, roles.stderr
    assert {r["name"]: r["may_request"] for r in json.loads(roles.stdout)} == {"stage-shell": True}


def test_a_step_up_sign_in_asks_the_provider_for_a_fresh_strong_sign_in(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    device_login(person, provider, server, "--max-age", "0", "--acr", "urn:jitgate:mfa", otp="123456")
    claims = jwt.decode(person.saved()["token"], options={"verify_signature": False})
    assert claims["acr"] == "urn:jitgate:mfa"
    assert claims["amr"] == ["pwd", "otp"]
    assert time.time() - claims["auth_time"] < 60


def test_the_login_file_is_0600_and_no_token_is_ever_printed(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    out, err = device_login(person, provider, server)
    assert stat.S_IMODE(person.login_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(person.login_file.parent.stat().st_mode) == 0o700
    saved = person.saved()
    assert saved["url"] == server.url
    assert saved["oidc"]["issuer"] == provider.issuer
    assert saved["oidc"]["client_id"] == CLI_CLIENT
    assert saved["oidc"]["expires_at"] > time.time()
    secrets = [saved["token"], saved["oidc"]["refresh_token"]]
    for secret in secrets:
        assert secret not in out
        assert secret not in err
    whoami = person.run("whoami")
    assert all(secret not in whoami.stdout + whoami.stderr for secret in secrets)


def test_a_browser_sign_in_through_the_loopback_redirect_stores_the_login(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    process, address, seen = browser_start(person, provider, server)
    query = parse_qs(urlsplit(address).query)
    assert query["code_challenge_method"] == ["S256"]
    assert urlsplit(query["redirect_uri"][0]).hostname == "127.0.0.1"
    back = sign_in(provider, address, "alice")
    assert httpx.get(back, timeout=10).status_code == 200
    code, out, err = finished(process, seen)
    assert code == 0, err
    assert "as oidc:alice" in out
    assert json.loads(person.run("whoami", "--json").stdout)["name"] == "oidc:alice"
    assert "refresh_token" in person.saved()["oidc"]


def test_the_loopback_callback_takes_no_code_with_another_state(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    process, address, seen = browser_start(person, provider, server)
    back = urlsplit(sign_in(provider, address, "alice"))
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    forged = urlunsplit(back._replace(query=urlencode({**query, "state": "someone-elses"})))
    assert httpx.get(forged, timeout=10).status_code == 400
    no_state = urlunsplit(back._replace(query=urlencode({"code": query["code"]})))
    assert httpx.get(no_state, timeout=10).status_code == 400
    assert process.poll() is None
    assert not person.login_file.exists()
    # The real answer still comes through afterwards: the forged ones changed nothing.
    assert httpx.get(urlunsplit(back), timeout=10).status_code == 200
    code, _, err = finished(process, seen)
    assert code == 0, err


def test_an_id_token_near_its_end_is_refreshed_before_the_call_and_the_new_refresh_token_kept(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    device_login(person, provider, server)
    before = person.saved()
    person.expire_stored_token()

    me = person.run("whoami", "--json")
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["name"] == "oidc:alice"
    after = person.saved()
    # The refresh token proves the refresh (the provider rotates it); the ID token's bytes need not
    # change: one issued in the same second with the same claims signs the same (RS256).
    assert after["oidc"]["refresh_token"] != before["oidc"]["refresh_token"]
    assert after["oidc"]["expires_at"] > time.time() + 60
    assert stat.S_IMODE(person.login_file.stat().st_mode) == 0o600
    assert [p.name for p in person.login_file.parent.iterdir() if p.name.endswith(".tmp")] == []
    # and the next call uses the new token as it is, without another refresh
    assert person.run("whoami").returncode == 0
    assert person.saved()["token"] == after["token"]


def test_commands_started_together_share_one_refresh(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    """The provider rotates refresh tokens and refuses a used one: only one command may refresh."""
    device_login(person, provider, server)
    person.expire_stored_token()
    running = [person.start("whoami") for _ in range(4)]
    answers = [p.communicate(timeout=60) for p in running]
    assert [p.returncode for p in running] == [0, 0, 0, 0], answers
    assert all("oidc:alice" in out for out, _ in answers)
    assert person.saved()["oidc"]["expires_at"] > time.time() + 60


def test_a_token_login_still_asks_for_the_token_and_stores_it(person: Person, server: Process) -> None:
    done = subprocess.run(
        [*JITGATE, "login", "--url", server.url],
        input=server.token + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=person.env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert server.token not in done.stdout
    assert person.saved() == {"url": server.url, "token": server.token}
    assert json.loads(person.run("whoami", "--json").stdout)["name"] == "alice"


def test_a_revoked_sign_in_ends_with_one_line_and_the_authentication_exit_code(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    device_login(person, provider, server)
    saved = person.saved()
    revoked = httpx.post(
        provider.discovery()["revocation_endpoint"],
        data={"token": saved["oidc"]["refresh_token"], "client_id": CLI_CLIENT},
        timeout=10,
    )
    assert revoked.status_code == 200
    person.expire_stored_token()

    me = person.run("whoami")
    assert (me.returncode, me.stdout, me.stderr) == (4, "", ENDED)
    roles = person.run("roles")
    assert (roles.returncode, roles.stderr) == (4, ENDED)


def test_an_api_token_in_the_environment_wins_over_the_stored_sign_in(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    device_login(person, provider, server)
    person.expire_stored_token()
    before = person.saved()
    me = person.run("whoami", "--json", extra={"JITGATE_TOKEN": server.token})
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["name"] == "alice"
    assert person.saved() == before  # not refreshed: the stored sign-in was not used


def test_logout_deletes_the_login_and_revokes_the_refresh_token_at_the_provider(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    device_login(person, provider, server)
    refresh = person.saved()["oidc"]["refresh_token"]
    done = person.run("logout")
    assert done.returncode == 0, done.stderr
    assert not person.login_file.exists()
    answer = httpx.post(
        provider.discovery()["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": CLI_CLIENT},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert person.run("whoami", "--url", server.url).returncode == 4


def test_login_forget_is_logout(person: Person, provider: OidcProvider, server: Process) -> None:
    device_login(person, provider, server)
    assert person.run("login", "--forget").returncode == 0
    assert not person.login_file.exists()


def test_a_device_sign_in_refused_at_the_provider_stores_nothing(
    person: Person, provider: OidcProvider, server: Process
) -> None:
    process = person.start("login", "--oidc", "--device", "--url", server.url)
    seen: list[str] = []
    assert process.stderr is not None
    complete = line_with(process.stderr, "or open ", seen).removeprefix("or open ")
    confirm_device(provider, complete, "alice", abort=True)
    code, _out, err = finished(process, seen)
    assert code == 4
    assert err.splitlines()[-1] == "error: the sign-in was refused at the identity provider"
    assert not person.login_file.exists()


def test_an_id_token_issued_to_another_client_is_refused_by_the_broker(
    provider: OidcProvider, server: Process
) -> None:
    discovery = provider.discovery()
    started = httpx.post(
        discovery["device_authorization_endpoint"],
        data={"client_id": OTHER_CLIENT, "scope": "openid profile groups"},
        timeout=10,
    ).json()
    confirm_device(provider, started["verification_uri_complete"], "alice")
    tokens = httpx.post(
        discovery["token_endpoint"],
        data={
            "client_id": OTHER_CLIENT,
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": started["device_code"],
        },
        timeout=10,
    ).json()
    answer = httpx.get(
        f"{server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {tokens['id_token']}"}, timeout=10
    )
    assert answer.status_code == 401
    assert re.search("(?i)audience", answer.json()["detail"])


def test_the_broker_tells_anyone_its_issuer_client_and_scopes(
    provider: OidcProvider, server: Process
) -> None:
    answer = httpx.get(f"{server.url}/api/v1/auth/oidc", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {
        "issuer": provider.issuer,
        "client_id": CLI_CLIENT,
        "scopes": ["openid", "profile", "groups", "offline_access"],
    }


def test_a_broker_without_an_identity_provider_says_to_use_a_token(tmp_path: Path) -> None:
    person = Person(tmp_path / "home")
    (tmp_path / "plain").mkdir()
    with broker(tmp_path / "plain", {}) as plain:
        assert httpx.get(f"{plain.url}/api/v1/auth/oidc", timeout=10).status_code == 404
        done = person.run("login", "--oidc", "--url", plain.url)
    assert done.returncode == 6
    assert "offers no OpenID sign-in; use jitgate login with an API token" in done.stderr
    assert not person.login_file.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--oidc", "--device", "--browser"], "--device and --browser exclude each other"),
        (["--max-age", "0"], "--max-age needs --oidc"),
        (["--acr", "urn:jitgate:mfa"], "--acr needs --oidc"),
    ],
)
def test_sign_in_options_that_cannot_apply_are_refused(person: Person, args: list[str], says: str) -> None:
    done = person.run("login", "--url", "http://127.0.0.1:9", "--token", "jg_unused", *args)
    assert done.returncode == 2
    assert says in " ".join(done.stderr.split())
    assert not person.login_file.exists()


def test_without_the_device_flow_for_its_client_the_sign_in_goes_through_the_browser(
    tmp_path: Path, provider: OidcProvider
) -> None:
    person = Person(tmp_path / "home")
    env = {
        "JITGATE_OIDC_ISSUER": provider.issuer,
        "JITGATE_OIDC_JWKS_URL": provider.jwks_url,
        "JITGATE_OIDC_CLI_CLIENT_ID": BROWSER_ONLY,
        "JITGATE_OIDC_CLI_SCOPES": "openid profile groups offline_access",
    }
    (tmp_path / "broker").mkdir()
    with broker(tmp_path / "broker", env) as other:
        process, address, seen = browser_start(person, provider, other, "--oidc")
        assert httpx.get(sign_in(provider, address, "alice"), timeout=10).status_code == 200
        code, out, err = finished(process, seen)
        assert code == 0, err
        assert "as oidc:alice" in out
        forced = person.run("login", "--oidc", "--device", "--url", other.url)
    assert forced.returncode == 4
    assert "refused to start a device sign-in" in forced.stderr


def test_id_tokens_the_provider_makes_short_lived_are_refreshed_even_after_they_ended(tmp_path: Path) -> None:
    person = Person(tmp_path / "home")
    with start_provider(tmp_path / "idp", [cli_client()], ttl={"IdToken": 5}, device_interval=1) as short:
        env = {
            "JITGATE_OIDC_ISSUER": short.issuer,
            "JITGATE_OIDC_JWKS_URL": short.jwks_url,
            "JITGATE_OIDC_CLI_CLIENT_ID": CLI_CLIENT,
            "JITGATE_OIDC_CLI_SCOPES": "openid profile groups offline_access",
        }
        (tmp_path / "broker").mkdir()
        with broker(tmp_path / "broker", env) as other:
            device_login(person, short, other)
            first = person.saved()
            assert first["oidc"]["expires_at"] <= time.time() + 5
            while time.time() < first["oidc"]["expires_at"] + 1:  # until the provider's token has ended
                time.sleep(0.2)
            me = person.run("whoami", "--json")
            assert me.returncode == 0, me.stderr
            assert json.loads(me.stdout)["name"] == "oidc:alice"
            assert person.saved()["token"] != first["token"]
            assert person.saved()["oidc"]["expires_at"] > first["oidc"]["expires_at"]
