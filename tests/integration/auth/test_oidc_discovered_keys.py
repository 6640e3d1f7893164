"""Bearer ID tokens are checked with the keys the issuer's discovery document names, when no JWKS
URL is configured: real providers publish their keys at paths of their own."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from jitgate.auth.oidc import OidcAuthenticator
from jitgate.errors import Unauthenticated
from support.oidcprovider import WEB_CLIENT, WEB_SECRET, OidcProvider, sign_in, start_provider, web_client

REDIRECT = "http://127.0.0.1:9/ui/oidc/callback"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with start_provider(Path(tmp_path_factory.mktemp("idp")), [web_client(REDIRECT)]) as running:
        yield running


def id_token(provider: OidcProvider, login: str) -> str:
    metadata = provider.discovery()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "client_id": WEB_CLIENT,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "openid profile groups",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    back = sign_in(provider, f"{metadata['authorization_endpoint']}?{urlencode(query)}", login)
    code = parse_qs(urlsplit(back).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    tokens = httpx.post(
        metadata["token_endpoint"], data=form, auth=(WEB_CLIENT, WEB_SECRET), timeout=10
    ).json()
    token: str = tokens["id_token"]
    return token


def test_without_a_jwks_url_the_keys_come_from_the_discovery_document(provider: OidcProvider) -> None:
    assert provider.discovery()["jwks_uri"] == provider.jwks_url  # not /.well-known/jwks.json
    oidc = OidcAuthenticator(issuer=provider.issuer, audience=WEB_CLIENT, jwks_url=None)
    who = oidc.authenticate(id_token(provider, "bob"))
    assert who.name == "oidc:bob"
    assert who.groups == {"engineers", "sre-leads"}


def test_a_discovery_document_of_another_issuer_is_not_trusted_for_keys(provider: OidcProvider) -> None:
    # The same provider reached under another name: its document names the real issuer, not this one.
    pretender = provider.issuer.replace("127.0.0.1", "localhost")
    oidc = OidcAuthenticator(issuer=pretender, audience=WEB_CLIENT, jwks_url=None)
    with pytest.raises(Unauthenticated, match="discovery document"):
        oidc.authenticate(id_token(provider, "bob"))
