"""The ID token the CLI receives is checked before it is stored: signed by a key of the provider's
JWKS (served over real HTTP) with an asymmetric algorithm, for this issuer and this client, not
ended, with this sign-in's nonce; a refreshed one must name the same person."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jitgate import errors
from jitgate.cli.oidc_client import checked_id_token
from support.keyserver import KeyServer, jwks_of

ISSUER = "http://127.0.0.1/idp"
CLIENT = "jitgate-cli"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_uri() -> Iterator[str]:
    with KeyServer({"/jwks": jwks_of(KEY)}) as server:
        yield f"{server.url}/jwks"


def id_token(key: Any = KEY, alg: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "alice", "iat": now, "exp": now + 300, "nonce": "n-1"}
    claims.update(overrides)
    kept = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(kept, key, algorithm=alg, headers={"kid": "k1"})


def check(token: str, jwks_uri: str, **extra: Any) -> dict[str, Any]:
    return checked_id_token(token, issuer=ISSUER, client_id=CLIENT, jwks_uri=jwks_uri, **extra)


def test_a_good_id_token_gives_its_claims(jwks_uri: str) -> None:
    assert check(id_token(), jwks_uri, nonce="n-1")["sub"] == "alice"
    assert check(id_token(aud=[CLIENT, "broker"], azp=CLIENT), jwks_uri)["sub"] == "alice"


@pytest.mark.parametrize(
    ("token", "extra", "says"),
    [
        (lambda: id_token(key=OTHER_KEY), {}, "not valid"),
        (lambda: id_token(key=b"k" * 32, alg="HS256"), {}, "not valid|refused"),
        (lambda: id_token(iss="http://127.0.0.1/elsewhere"), {}, "(?i)issuer"),
        (lambda: id_token(aud="another-app"), {}, "(?i)audience"),
        (lambda: id_token(aud=[CLIENT, "another-app"]), {}, "another party"),
        (lambda: id_token(exp=int(time.time()) - 3600), {}, "expired"),
        (lambda: id_token(exp=None), {}, "exp"),
        (lambda: id_token(nonce="someone-elses"), {"nonce": "n-1"}, "nonce"),
        (lambda: id_token(nonce=None), {"nonce": "n-1"}, "nonce"),
        (lambda: id_token(sub="mallory"), {"subject": "alice"}, "someone else"),
    ],
)
def test_id_tokens_the_cli_must_not_keep_are_refused(
    jwks_uri: str, token: Any, extra: dict[str, Any], says: str
) -> None:
    with pytest.raises(errors.Unauthenticated, match=says):
        check(token(), jwks_uri, **extra)


def test_keys_that_cannot_be_fetched_are_a_reachability_error() -> None:
    with pytest.raises(errors.StorageUnavailable, match="keys"):
        check(id_token(), "http://127.0.0.1:9/jwks")
