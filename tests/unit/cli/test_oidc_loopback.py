"""The loopback redirect's checks: only this sign-in's ``state`` (and issuer, when named) gets a
code through; PKCE is S256 as RFC 7636 computes it; endpoints are https or loopback http."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from jitgate import errors
from jitgate.cli.oidc_client import ProviderMetadata, checked_endpoint
from jitgate.cli.oidc_loopback import Answer, LoopbackRequest, judge

ISSUER = "https://idp.example"
REQUEST = LoopbackRequest(state="s-1", nonce="n-1", verifier="dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")


def test_the_pkce_challenge_is_rfc_7636_s256() -> None:
    assert REQUEST.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B


def test_every_sign_in_has_fresh_secrets() -> None:
    one, two = LoopbackRequest(), LoopbackRequest()
    assert len({one.state, two.state, one.nonce, two.nonce, one.verifier, two.verifier}) == 6
    assert 43 <= len(one.verifier) <= 128


def test_the_authorize_address_carries_state_nonce_and_challenge() -> None:
    address = REQUEST.authorize_url(f"{ISSUER}/auth", "http://127.0.0.1:5000/callback", {"client_id": "cli"})
    query = parse_qs(urlsplit(address).query)
    assert query["state"] == ["s-1"]
    assert query["nonce"] == ["n-1"]
    assert query["code_challenge"] == [REQUEST.challenge]
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_type"] == ["code"]
    assert "n-1" not in str(REQUEST.token_form("c", "http://127.0.0.1:5000/callback", "cli"))


@pytest.mark.parametrize(
    "query",
    [
        {"code": ["c"]},
        {"code": ["c"], "state": ["s-2"]},
        {"code": ["c"], "state": ["s-1", "s-1"]},
        {"code": ["c"], "state": [""]},
        {"code": ["c"], "state": ["s-1"], "iss": ["https://evil.example"]},
        {"state": ["s-1"]},
    ],
)
def test_answers_not_of_this_sign_in_are_refused(query: dict[str, list[str]]) -> None:
    assert judge(REQUEST, ISSUER, query) is None


def test_this_sign_in_s_answer_is_taken() -> None:
    assert judge(REQUEST, ISSUER, {"code": ["c"], "state": ["s-1"], "iss": [ISSUER]}) == Answer(code="c")
    assert judge(REQUEST, ISSUER, {"code": ["c"], "state": ["s-1"]}) == Answer(code="c")
    assert judge(REQUEST, ISSUER, {"error": ["access_denied"], "state": ["s-1"]}) == Answer(
        error="access_denied"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example/token",
        "ftp://idp.example/",
        "file:///etc/passwd",
        "https://user:pw@idp.example/",
        7,
    ],
)
def test_endpoints_off_this_machine_must_be_https(url: object) -> None:
    with pytest.raises(errors.InvalidInput):
        checked_endpoint(url, "token_endpoint")


def test_loopback_http_and_https_endpoints_are_fine() -> None:
    for url in ("https://idp.example/token", "http://127.0.0.1:8000/token", "http://[::1]:8000/t"):
        assert checked_endpoint(url, "token_endpoint") == url


def test_discovery_must_name_the_issuer_the_broker_named() -> None:
    document = {"issuer": ISSUER, "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks"}
    assert ProviderMetadata.from_document(ISSUER, document).token_endpoint == f"{ISSUER}/token"
    with pytest.raises(errors.InvalidInput, match="calls itself"):
        ProviderMetadata.from_document(ISSUER, {**document, "issuer": "https://idp.example/"})
    with pytest.raises(errors.InvalidInput, match="not https"):
        ProviderMetadata.from_document(ISSUER, {**document, "jwks_uri": "http://idp.example/jwks"})
