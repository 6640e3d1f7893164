"""A real ``jitgate server`` process whose console signs in at the real OpenID provider.

``sso_server`` starts the provider (``oidcprovider.py``) with the console as its web client, then
the broker (``broker_process.serving``) configured for single sign-on against it, members of
``jitgate-admins`` at the provider being the broker's admins. The broker's public address is
``http://localhost:PORT`` and the provider's ``http://127.0.0.1:PORT``: two sites, as in a real
install, so a browser sends each only its own cookies and the provider's way back is a
cross-site navigation. API-token users (``users``) are added before the broker starts, for
whatever signs in with a token.

``sso_round_trip`` is the whole sign-in over HTTP, the way a browser makes it: the broker's start
redirect, the provider's sign-in page and consent, the broker's callback, the first console page.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support.broker import free_port
from support.broker_process import JITGATE, serving
from support.oidcprovider import WEB_CLIENT, WEB_SECRET, OidcProvider, sign_in, start_provider, web_client
from support.ssobroker import SSO_POLICY, landing

ADMIN_GROUP = "jitgate-admins"


@dataclass
class SsoServer:
    url: str
    """The console's public address (``http://localhost:PORT``)."""
    port: int
    provider: OidcProvider
    data: Path
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)
    """API tokens of the users added with ``jitgate users add``, by name."""

    @property
    def callback(self) -> str:
        return f"{self.url}/ui/oidc/callback"

    @property
    def signed_out(self) -> str:
        return f"{self.url}/ui/login?error=signed_out"


@contextmanager
def sso_server(
    tmp: Path,
    policy: str = SSO_POLICY,
    *,
    users: Mapping[str, list[str]] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[SsoServer]:
    """The provider and a ``jitgate server`` signing in there; ``users``: name to ``users add`` flags."""
    port = free_port()
    url = f"http://localhost:{port}"
    clients = [
        web_client(f"{url}/ui/oidc/callback", post_logout_redirect_uris=[f"{url}/ui/login?error=signed_out"])
    ]
    with start_provider(tmp / "idp", clients) as provider:
        data = tmp / "data"
        policy_file = tmp / "policy.yaml"
        policy_file.write_text(policy)
        tokens = {name: add_user(data, name, flags) for name, flags in (users or {}).items()}
        settings = {
            "JITGATE_PUBLIC_URL": url,
            "JITGATE_OIDC_ISSUER": provider.issuer,
            "JITGATE_OIDC_CLIENT_ID": WEB_CLIENT,
            "JITGATE_OIDC_CLIENT_SECRET": WEB_SECRET,
            "JITGATE_OIDC_ADMIN_GROUPS": json.dumps([ADMIN_GROUP]),
            **(env or {}),
        }
        log = tmp / "server.log"
        with serving(data, policy_file, log, settings, port=port):
            yield SsoServer(url, port, provider, data, log, tokens)


def add_user(data: Path, name: str, flags: list[str]) -> str:
    """``jitgate users add NAME FLAGS``; the new user's API token."""
    added = subprocess.run(
        [*JITGATE, "users", "add", name, *flags, "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    token: str = json.loads(added.stdout)["token"]
    return token


@dataclass
class RoundTrip:
    """How long each part of one sign-in took, in seconds, and the console page it ended on."""

    start: float
    provider: float
    callback: float
    first_page: float
    page: httpx.Response

    @property
    def total(self) -> float:
        return self.start + self.provider + self.callback + self.first_page


def sso_round_trip(
    server: SsoServer, login: str, browser: httpx.Client, clock: Callable[[], float] = time.perf_counter
) -> RoundTrip:
    """Sign ``browser`` (a fresh cookie jar) in as ``login`` through the provider, timing each part.

    The callback answers a page that goes on by itself (``web/oidc_signin.py`` says why); like a
    browser, this follows it to the console's first page.
    """
    t0 = clock()
    started = browser.get(f"{server.url}/ui/oidc/start", follow_redirects=False)
    if started.status_code != 303:
        raise AssertionError(f"the broker did not send the browser to the provider: {started.status_code}")
    t1 = clock()
    back = sign_in(server.provider, started.headers["location"], login, browser=browser)
    if not back.startswith(server.callback + "?"):
        raise AssertionError(f"the provider sent the browser elsewhere: {back}")
    t2 = clock()
    answered = browser.get(back, follow_redirects=False)
    if answered.status_code != 200 or "jitgate_session" not in browser.cookies:
        raise AssertionError(f"the broker's callback refused the sign-in: {answered.status_code}")
    t3 = clock()
    first = browser.get(server.url + landing(answered), follow_redirects=False)
    if first.status_code != 200:
        raise AssertionError(f"the console's first page answered {first.status_code}")
    t4 = clock()
    return RoundTrip(t1 - t0, t2 - t1, t3 - t2, t4 - t3, first)
