"""A real OpenID provider for the tests: ``oidc-provider`` from npm, run by node on a loopback port.

``start_provider`` writes the provider's configuration (clients, accounts, token lifetimes), starts
``tests/support/oidc/provider.mjs`` and waits for its discovery document. The accounts file is
read by the provider on every sign-in, so ``provider.set_accounts`` changes a user's groups for
the next sign-in or refresh. ``sign_in`` drives the provider's sign-in page over HTTP the way a
browser would and returns where the provider sends the browser back to (the client's redirect URI
with ``code`` and ``state``); Playwright tests use the same page in Chromium. ``confirm_device``
does the same for the device flow: the provider's code confirmation pages, then its sign-in page.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from support import component_missing
from support.broker import free_port

HERE = Path(__file__).parent / "oidc"
PASSWORD_ACR = "urn:jitgate:pwd"
MFA_ACR = "urn:jitgate:mfa"
WEB_CLIENT = "jitgate-web"
WEB_SECRET = "web-client-secret-for-tests-only-0123456789"
CLI_CLIENT = "jitgate-cli"
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alice-pw", "groups": ["engineers"], "name": "Alice Engineer"},
    "bob": {"password": "bob-pw", "groups": ["engineers", "sre-leads"], "name": "Bob Lead"},
    "carol": {"password": "carol-pw", "groups": ["engineers", "oncall"], "name": "Carol Oncall"},
    "dave": {"password": "dave-pw", "groups": ["sre-leads", "jitgate-admins"], "name": "Dave Admin"},
}


@dataclass
class OidcProvider:
    issuer: str
    port: int
    accounts_file: Path
    process: subprocess.Popen[bytes]

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def set_accounts(self, accounts: Mapping[str, Mapping[str, Any]]) -> None:
        tmp = self.accounts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(accounts))
        tmp.replace(self.accounts_file)

    def discovery(self) -> dict[str, Any]:
        document: dict[str, Any] = httpx.get(self.discovery_url, timeout=5).json()
        return document


def web_client(redirect_uri: str, **extra: Any) -> dict[str, Any]:
    """Metadata of a confidential web client (the broker's console) sending users back to ``redirect_uri``."""
    return {
        "client_id": WEB_CLIENT,
        "client_secret": WEB_SECRET,
        "redirect_uris": [redirect_uri],
        "post_logout_redirect_uris": [redirect_uri.rsplit("/", 1)[0] + "/login"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "require_auth_time": True,
        **extra,
    }


def cli_client(**extra: Any) -> dict[str, Any]:
    """Metadata of a public native client (the CLI): loopback redirects on any port, and the device flow."""
    return {
        "client_id": CLI_CLIENT,
        "application_type": "native",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "require_auth_time": True,
        **extra,
    }


def ensure_installed() -> str:
    """The node binary, after installing the provider's package once (pinned by its lock file)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        component_missing("node and npm (for the OpenID provider)")
    with (HERE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (HERE / "node_modules" / "oidc-provider" / "package.json").exists():
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                check=False,
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0:
                component_missing(f"the oidc-provider npm package ({done.stderr.strip()[-300:]})")
    return node


@contextmanager
def start_provider(
    tmp: Path,
    clients: list[dict[str, Any]],
    accounts: Mapping[str, Mapping[str, Any]] = ACCOUNTS,
    ttl: Mapping[str, int] | None = None,
    device_interval: int | None = None,
) -> Iterator[OidcProvider]:
    node = ensure_installed()
    tmp.mkdir(parents=True, exist_ok=True)
    accounts_file = tmp / "accounts.json"
    accounts_file.write_text(json.dumps(accounts))
    # A provider that never answers (seen now and then on a loaded machine, its log silent after
    # node's start-up warning) is stopped and started once more on another port.
    for attempt in (1, 2):
        port = free_port()
        config = tmp / "provider.json"
        settings = {
            "port": port,
            "clients": clients,
            "accounts_file": str(accounts_file),
            "ttl": dict(ttl or {}),
        }
        if device_interval is not None:
            settings["device_interval"] = device_interval
        config.write_text(json.dumps(settings))
        log = (tmp / "provider.log").open("wb")
        command = [node, str(HERE / "provider.mjs"), str(config)]
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=HERE)
        provider = OidcProvider(f"http://127.0.0.1:{port}", port, accounts_file, process)
        try:
            try:
                _wait_ready(provider, tmp / "provider.log")
            except ProviderSilent:
                if attempt == 2:
                    raise
                continue
            yield provider
            return
        finally:
            _stop(process)
            log.close()


class ProviderSilent(RuntimeError):
    """The provider runs but has not answered its discovery document in time."""


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(provider: OidcProvider, log: Path) -> None:
    # Node starts in about a second; on a machine busy with the rest of the suite it can take far
    # longer, so the wait is generous (it ends as soon as the discovery document answers).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if provider.process.poll() is not None:
            raise RuntimeError(f"the OpenID provider exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(provider.discovery_url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise ProviderSilent(f"the OpenID provider did not start: {log.read_text()[-2000:]}")


def sign_in(
    provider: OidcProvider,
    authorize_url: str,
    login: str,
    password: str | None = None,
    *,
    otp: str | None = None,
    browser: httpx.Client | None = None,
) -> str:
    """Follow ``authorize_url`` through the provider's sign-in page as ``login``; the URL it sends back to.

    ``browser`` keeps the provider's cookies between calls (a second sign-in in the same browser
    finds the provider's session). The returned URL is not fetched: the caller hands it to the
    client under test.
    """
    own = browser is None
    client = browser or httpx.Client(timeout=10)
    try:
        url = authorize_url
        for _ in range(20):
            response = client.get(url)
            if response.status_code in (302, 303):
                location = urljoin(url, response.headers["location"])
                if not location.startswith(provider.issuer + "/"):
                    return location
                url = location
                continue
            if response.status_code == 200 and "/interaction/" in url and 'name="login"' in response.text:
                form = {"login": login, "password": password or ACCOUNTS.get(login, {}).get("password", "")}
                if otp is not None:
                    form["otp"] = otp
                response = client.post(url.rstrip("/") + "/login", data=form)
                if response.status_code in (302, 303):
                    url = urljoin(url, response.headers["location"])
                    if not url.startswith(provider.issuer + "/"):
                        return url
                    continue
            raise AssertionError(f"unexpected answer from the provider at {url}: {response.status_code}")
        raise AssertionError("too many redirects at the provider")
    finally:
        if own:
            client.close()


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"/?>')


def confirm_device(
    provider: OidcProvider,
    verification_uri_complete: str,
    login: str,
    password: str | None = None,
    *,
    otp: str | None = None,
    abort: bool = False,
) -> None:
    """Confirm a device sign-in in a browser of its own as ``login`` (or abort it at the code page).

    Follows the provider's pages: the code form (sent on as a browser's script would), the
    confirmation (``confirm`` or ``abort``), the sign-in page, and the way back to the device
    page, until the provider says the sign-in is done or refused.
    """
    with httpx.Client(timeout=10) as client:
        url, response = verification_uri_complete, client.get(verification_uri_complete)
        for _ in range(20):
            if response.status_code in (302, 303):
                url = urljoin(url, response.headers["location"])
                response = client.get(url)
                continue
            text = response.text
            if response.status_code == 200 and (
                "Sign-in Success" in text or "request was interrupted" in text
            ):
                return
            if response.status_code == 200 and 'name="login"' in text:
                form = {"login": login, "password": password or ACCOUNTS.get(login, {}).get("password", "")}
                if otp is not None:
                    form["otp"] = otp
                response = client.post(url.rstrip("/") + "/login", data=form)
                continue
            fields = dict(_HIDDEN.findall(text))
            if response.status_code == 200 and "user_code" in fields:
                if fields.get("confirm") == "yes" and abort:
                    fields = {**{k: v for k, v in fields.items() if k != "confirm"}, "abort": "yes"}
                url = f"{provider.issuer}/device"
                response = client.post(url, data=fields)
                continue
            raise AssertionError(f"unexpected answer from the provider at {url}: {response.status_code}")
        raise AssertionError("too many steps at the provider's device pages")
