"""The console's identity provider turned against the broker: a discovery document (served by a
real local HTTP server standing in for the configured issuer) that sends the broker's client secret
and the people's sign-in codes, or fetching the keys that check bearer tokens, somewhere they would
travel in the clear."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jitgate.auth.oidc import OidcAuthenticator
from jitgate.auth.oidc_provider import OpenIdProvider
from jitgate.clock import FrozenClock
from jitgate.errors import IdentityProviderUnavailable, Unauthenticated


@contextmanager
def provider_serving(document: dict[str, Any]) -> Iterator[str]:
    """An issuer on loopback whose discovery document is ``document`` (its ``issuer`` filled in)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({**document, "issuer": issuer}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


GOOD = {
    "authorization_endpoint": "https://idp.example/authorize",
    "token_endpoint": "https://idp.example/token",
    "jwks_uri": "https://idp.example/jwks",
}


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("token_endpoint", "http://idp.example/token"),
        ("jwks_uri", "http://idp.example/jwks"),
        ("authorization_endpoint", "http://idp.example/authorize"),
        ("token_endpoint", "https://user:pass@idp.example/token"),
        ("token_endpoint", "https:///token"),
    ],
)
def test_an_endpoint_the_broker_would_reach_in_the_clear_is_refused(
    clock: FrozenClock, name: str, url: str
) -> None:
    with provider_serving({**GOOD, name: url}) as issuer:
        provider = OpenIdProvider(issuer, client_id="broker", client_secret="s3cret", clock=clock)
        with pytest.raises(IdentityProviderUnavailable, match=f"no usable {name}"):
            provider.metadata()
        provider.close()


def test_endpoints_on_https_or_on_loopback_are_taken(clock: FrozenClock) -> None:
    with provider_serving({**GOOD, "token_endpoint": "http://127.0.0.1:9/token"}) as issuer:
        provider = OpenIdProvider(issuer, client_id="broker", client_secret="s3cret", clock=clock)
        assert provider.metadata().token_endpoint == "http://127.0.0.1:9/token"
        provider.close()


def test_bearer_tokens_are_not_checked_with_keys_fetched_in_the_clear() -> None:
    with provider_serving({**GOOD, "jwks_uri": "http://idp.example/jwks"}) as issuer:
        authenticator = OidcAuthenticator(issuer=issuer, audience="jitgate", jwks_url=None)
        with pytest.raises(Unauthenticated, match="no https jwks_uri"):
            authenticator.authenticate("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
