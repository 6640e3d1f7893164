"""OIDC bearer tokens verified against a JWKS served over real HTTP: good tokens map to an identity
with groups; forged, expired, wrong-audience and ``alg: none`` tokens are refused."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jitgate.auth.base import authenticate
from jitgate.auth.oidc import OidcAuthenticator
from jitgate.errors import Unauthenticated

ISSUER = "https://idp.example"
AUDIENCE = "jitgate"
SIGNING = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def token(key: Any = SIGNING, alg: str = "RS256", kid: str = "k1", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-1",
        "preferred_username": "alice",
        "groups": ["engineers", "sre-leads"],
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, key, algorithm=alg, headers={"kid": kid}
    )


@pytest.fixture
def oidc(jwks_url: str) -> OidcAuthenticator:
    return OidcAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url, admin_groups=["sre-leads"])


def test_a_valid_token_becomes_an_identity_with_groups(oidc: OidcAuthenticator) -> None:
    who = authenticate([oidc], f"Bearer {token()}")
    assert who.name == "alice"
    assert who.groups == {"engineers", "sre-leads"}
    assert who.admin
    assert who.source == "oidc"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token(key=OTHER), "Signature verification failed"),
        (lambda: token(exp=int(time.time()) - 3600), "expired"),
        (lambda: token(aud="someone-else"), "(?i)audience"),
        (lambda: token(iss="https://evil.example"), "(?i)issuer"),
        (lambda: token(exp=None), "exp"),
        (lambda: token(key=ec.generate_private_key(ec.SECP256R1()), alg="ES256"), "refused"),
    ],
)
def test_bad_tokens_are_refused(oidc: OidcAuthenticator, make: Any, reason: str) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        authenticate([oidc], f"Bearer {make()}")


def test_alg_none_and_hmac_with_the_public_key_are_refused(oidc: OidcAuthenticator) -> None:
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x"}, None, algorithm="none", headers={"kid": "k1"}
    )
    with pytest.raises(Unauthenticated):
        authenticate([oidc], f"Bearer {unsigned}")
    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode()
    ).decode()
    forged = f"{header}.{token().split('.')[1]}.AAAA"
    with pytest.raises(Unauthenticated):
        authenticate([oidc], f"Bearer {forged}")
