"""Forged OIDC tokens that a lax verifier would take, refused by ours.

Each forgery here is built to be *accepted* by the verifier it attacks: the HMAC forgery is a
correct HS256 signature keyed with the issuer's public key, the unsigned tokens are in the shapes
lax verifiers take, the algorithm swap is a genuine signature by the issuer's own key, and the
injected keys really sign the token. So a test fails as soon as our verifier lets the weak path in,
not merely because the forgery is junk. The JWKS and the attacker's key server are real HTTP
servers; an attacker's server must never even be asked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from jitgate.auth.base import authenticate
from jitgate.auth.oidc import OidcAuthenticator
from jitgate.errors import Unauthenticated
from support.keyserver import KeyServer, jwk_of

ISSUER = "https://idp.example"
AUDIENCE = "jitgate"
ISSUERS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKERS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


ISSUERS_JWKS = json.dumps({"keys": [jwk_of(ISSUERS_KEY, "k1")]}).encode()


@pytest.fixture(scope="module")
def idp() -> Iterator[KeyServer]:
    with KeyServer({"/jwks.json": ISSUERS_JWKS}) as server:
        yield server


@pytest.fixture(scope="module")
def attacker() -> Iterator[KeyServer]:
    files = {
        "/jwks.json": json.dumps({"keys": [jwk_of(ATTACKERS_KEY, "k1")]}).encode(),
        "/cert.pem": _certificate(ATTACKERS_KEY),
    }
    with KeyServer(files) as server:
        yield server


@pytest.fixture
def oidc(idp: KeyServer) -> OidcAuthenticator:
    return OidcAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks_url=f"{idp.url}/jwks.json")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-admin",
        "groups": ["admins"],
        "iat": now,
        "exp": now + 300,
    }


def _unsigned(header: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims()).encode())}"


def _refused(oidc: OidcAuthenticator, bearer: str) -> None:
    """Refused both through the authenticator chain and by the verifier itself."""
    with pytest.raises(Unauthenticated):
        authenticate([oidc], f"Bearer {bearer}")
    with pytest.raises(Unauthenticated):
        oidc.authenticate(bearer)


def test_a_genuine_token_is_taken_so_the_refusals_below_mean_something(oidc: OidcAuthenticator) -> None:
    good = jwt.encode(_claims(), ISSUERS_KEY, algorithm="RS256", headers={"kid": "k1"})
    assert oidc.authenticate(good).name == "oidc:u-admin"


PUBLIC = ISSUERS_KEY.public_key()
HMAC_SECRETS = {
    "SubjectPublicKeyInfo PEM": PUBLIC.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
    "PKCS#1 PEM": PUBLIC.public_bytes(Encoding.PEM, PublicFormat.PKCS1),
    "DER": PUBLIC.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
    "JWK as served": json.dumps(jwk_of(ISSUERS_KEY, "k1")).encode(),
}


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("secret", list(HMAC_SECRETS), ids=list(HMAC_SECRETS))
def test_an_hmac_token_keyed_with_the_issuers_public_key_is_refused(
    oidc: OidcAuthenticator, alg: str, secret: str
) -> None:
    signing_input = _unsigned({"alg": alg, "kid": "k1", "typ": "JWT"})
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(HMAC_SECRETS[secret], signing_input.encode(), digest).digest()
    forged = f"{signing_input}.{_b64(signature)}"
    assert oidc.recognises(forged)  # it reaches the verifier
    _refused(oidc, forged)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("tail", ["empty signature", "no signature segment", "junk signature"])
def test_an_unsigned_token_is_refused_in_every_shape(oidc: OidcAuthenticator, alg: str, tail: str) -> None:
    body = _unsigned({"alg": alg, "kid": "k1", "typ": "JWT"})
    bearer = {"empty signature": f"{body}.", "no signature segment": body, "junk signature": f"{body}.AAAA"}[
        tail
    ]
    _refused(oidc, bearer)


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "PS384", "PS512"])
def test_a_token_signed_by_the_issuers_key_under_another_algorithm_than_its_jwk_is_refused(
    oidc: OidcAuthenticator, alg: str
) -> None:
    swapped = jwt.encode(_claims(), ISSUERS_KEY, algorithm=alg, headers={"kid": "k1"})
    assert jwt.decode(swapped, PUBLIC, algorithms=[alg], audience=AUDIENCE)  # a genuine signature
    _refused(oidc, swapped)


@pytest.mark.parametrize("header", ["jwk", "jku", "x5u", "x5c"])
def test_a_key_named_in_the_tokens_own_header_is_never_used(
    oidc: OidcAuthenticator, attacker: KeyServer, header: str
) -> None:
    planted: dict[str, Any] = {
        "jwk": jwk_of(ATTACKERS_KEY, "k1"),
        "jku": f"{attacker.url}/jwks.json",
        "x5u": f"{attacker.url}/cert.pem",
        "x5c": [
            base64.b64encode(
                x509.load_pem_x509_certificate(_certificate(ATTACKERS_KEY)).public_bytes(Encoding.DER)
            ).decode()
        ],
    }
    asked_before = len(attacker.asked)
    for kid in ("k1", "attacker"):
        forged = jwt.encode(
            _claims(), ATTACKERS_KEY, algorithm="RS256", headers={"kid": kid, header: planted[header]}
        )
        _refused(oidc, forged)
    assert attacker.asked[asked_before:] == []


def test_a_shared_secret_published_in_the_jwks_is_never_a_signing_key() -> None:
    """An issuer that publishes an ``oct`` key has published its secret: nothing it signs counts."""
    secret = b"published-for-everyone-to-read-0123456789"
    jwk = {"kty": "oct", "k": _b64(secret), "kid": "k1", "alg": "HS256", "use": "sig"}
    with KeyServer({"/jwks.json": json.dumps({"keys": [jwk]}).encode()}) as careless:
        oidc = OidcAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks_url=f"{careless.url}/jwks.json")
        forged = jwt.encode(_claims(), secret, algorithm="HS256", headers={"kid": "k1"})
        with pytest.raises(Unauthenticated, match="HS256, which is not accepted"):
            oidc.authenticate(forged)
