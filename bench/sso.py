"""The console's sign-in round trip through the real OpenID provider, its parts, and its peers.

    .venv/bin/python bench/sso.py              # 30 sign-ins of each kind, interleaved
    .venv/bin/python bench/sso.py --runs 100

The test suite's provider (``oidc-provider`` on node, ``tests/support/oidcprovider.py``) and a real
``jitgate server`` on SQLite whose console signs in there (``tests/support/ssoserver.py``), on two
loopback sites like a real install. Each sign-in is a fresh browser (httpx, an empty cookie jar)
driving the provider's own sign-in form over HTTP the way Chromium does in the tests:

- SSO through the broker: ``GET /ui/oidc/start`` (the broker's redirect) → the provider's
  authorize, sign-in form, login POST and consent → the broker's callback (code exchange at the
  provider, ID token check, session opened) → the console's first page. Timed end to end and by
  part.
- The peer: the same authorization request made directly at the provider, without the broker
  (same client, scopes, PKCE and consent), then the code exchanged at its token endpoint; what
  any relying party would pay. The difference is the broker's own cost.
- Token sign-in: ``POST /ui/login`` with an API token, then the first page, for comparison.

The three kinds run alternately, so load from elsewhere on the machine hits all alike; the first
round of each is a warm-up and not counted (its time is printed). Figures are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
# The test support imports starlette's TestClient, which warns about the httpx it is given.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from support.oidcprovider import WEB_CLIENT, WEB_SECRET, sign_in  # noqa: E402
from support.ssoserver import SsoServer, sso_round_trip, sso_server  # noqa: E402

Parts = dict[str, float]


def figures(samples: list[float]) -> tuple[float, float, float, float]:
    """min, p50, p95 and p99 (nearest rank) of ``samples``, in milliseconds."""
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))] * 1000

    return ordered[0] * 1000, rank(0.50), rank(0.95), rank(0.99)


def through_broker(server: SsoServer) -> Parts:
    with httpx.Client(timeout=30) as browser:
        trip = sso_round_trip(server, "alice", browser)
    if "Your access" not in trip.page.text:
        raise RuntimeError("the console's first page after the sign-in is not the access page")
    return {
        "SSO round trip through the broker": trip.total,
        "  broker: /ui/oidc/start redirect": trip.start,
        "  provider: authorize, sign-in form, consent": trip.provider,
        "  broker: callback (code, ID token, session)": trip.callback,
        "  broker: first console page": trip.first_page,
    }


def provider_alone(server: SsoServer, endpoints: dict[str, str], scope: str) -> Parts:
    """The same authorization at the provider without the broker: what any relying party pays."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": WEB_CLIENT,
        "redirect_uri": server.callback,
        "scope": scope,
        "state": secrets.token_urlsafe(32),
        "nonce": secrets.token_urlsafe(32),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "prompt": "consent",
    }
    with httpx.Client(timeout=30) as browser:
        t0 = time.perf_counter()
        authorize = f"{endpoints['authorization_endpoint']}?{urlencode(query)}"
        back = sign_in(server.provider, authorize, "alice", browser=browser)
        t1 = time.perf_counter()
        code = parse_qs(urlsplit(back).query)["code"][0]
        answer = browser.post(
            endpoints["token_endpoint"],
            auth=(WEB_CLIENT, WEB_SECRET),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": server.callback,
                "code_verifier": verifier,
            },
        )
        t2 = time.perf_counter()
    if answer.status_code != 200 or "id_token" not in answer.json():
        raise RuntimeError(f"the provider's token endpoint answered {answer.status_code}: {answer.text}")
    return {
        "Provider alone: authorize to tokens": t2 - t0,
        "  authorize, sign-in form, consent": t1 - t0,
        "  token exchange": t2 - t1,
    }


def with_token(server: SsoServer) -> Parts:
    with httpx.Client(timeout=30) as browser:
        form = browser.get(f"{server.url}/ui/login")
        match = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if match is None:
            raise RuntimeError("the sign-in page has no form token")
        t0 = time.perf_counter()
        signed = browser.post(
            f"{server.url}/ui/login", data={"token": server.tokens["alice"], "csrf": match.group(1)}
        )
        t1 = time.perf_counter()
        first = browser.get(f"{server.url}/ui/")
        t2 = time.perf_counter()
    if signed.status_code != 303 or "Your access" not in first.text:
        raise RuntimeError(f"the token sign-in failed: {signed.status_code}")
    return {"Token sign-in: POST /ui/login and first page": t2 - t0, "  POST /ui/login": t1 - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30, help="sign-ins of each kind (default 30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jitgate-bench-sso-") as tmp:
        users = {"alice": ["--group=engineers"]}
        with sso_server(Path(tmp), users=users) as server:
            discovery = server.provider.discovery()
            start = httpx.get(f"{server.url}/ui/oidc/start").headers["location"]
            scope = parse_qs(urlsplit(start).query)["scope"][0]  # exactly what the broker asks for
            kinds: list[Callable[[], Parts]] = [
                lambda: through_broker(server),
                lambda: provider_alone(server, discovery, scope),
                lambda: with_token(server),
            ]
            warm = [kind() for kind in kinds]
            samples: dict[str, list[float]] = {}
            for _ in range(args.runs):
                for kind in kinds:
                    for name, seconds in kind().items():
                        samples.setdefault(name, []).append(seconds)
    print(f"Sign-in round trips, {args.runs} of each (ms; first rounds not counted)")
    print(f"  {'':<48} {'min':>7} {'p50':>7} {'p95':>7} {'p99':>7}   {'first':>7}")
    first = {name: seconds for parts in warm for name, seconds in parts.items()}
    for name, values in samples.items():
        low, p50, p95, p99 = figures(values)
        print(f"  {name:<48} {low:7.1f} {p50:7.1f} {p95:7.1f} {p99:7.1f}   {first[name] * 1000:7.1f}")
    broker_p50 = figures(samples["SSO round trip through the broker"])[1]
    alone_p50 = figures(samples["Provider alone: authorize to tokens"])[1]
    print(f"  the broker's own share of the SSO round trip at p50: {broker_p50 - alone_p50:.1f} ms")


if __name__ == "__main__":
    main()
