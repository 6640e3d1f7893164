"""The pure parts of the console's sign-in: PKCE (RFC 7636's own example), the authorization URL,
the checks of an ID token's times and strength at an injected ``now``, and where the browser may
be sent afterwards."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from jitgate.auth.oidc_flow import (
    authorize_url,
    check_sign_in_strength,
    check_token_times,
    code_challenge,
    new_code_verifier,
)
from jitgate.auth.oidc_provider import check_issuer_url
from jitgate.errors import Unauthenticated
from jitgate.web.oidc_signin import safe_next

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())


def test_the_s256_challenge_is_rfc_7636s_example() -> None:
    assert (
        code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_a_code_verifier_is_43_url_safe_characters_and_new_each_time() -> None:
    made = {new_code_verifier() for _ in range(50)}
    assert len(made) == 50
    assert all(len(v) == 43 and v.replace("-", "").replace("_", "").isalnum() for v in made)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_the_authorization_url_asks_for_a_code_with_pkce_and_the_step_up() -> None:
    url = authorize_url(
        "https://idp.example/authorize?tenant=a",
        client_id="jitgate",
        redirect_uri="https://jitgate.example/ui/oidc/callback",
        scopes="openid groups offline_access",
        state="s",
        nonce="n",
        challenge="c",
        max_age=300,
        acr_values=("urn:mfa", "urn:hwk"),
        prompt_login=True,
    )
    assert url.startswith("https://idp.example/authorize?tenant=a&")
    assert query(url) == {
        "tenant": "a",
        "response_type": "code",
        "client_id": "jitgate",
        "redirect_uri": "https://jitgate.example/ui/oidc/callback",
        "scope": "openid groups offline_access",
        "state": "s",
        "nonce": "n",
        "code_challenge": "c",
        "code_challenge_method": "S256",
        "max_age": "300",
        "acr_values": "urn:mfa urn:hwk",
        "prompt": "login consent",
    }


def test_a_plain_sign_in_asks_for_no_prompt_without_offline_access() -> None:
    asked = query(
        authorize_url(
            "https://idp.example/a",
            client_id="c",
            redirect_uri="https://j/cb",
            scopes="openid",
            state="s",
            nonce="n",
            challenge="c",
        )
    )
    assert "prompt" not in asked
    assert "max_age" not in asked
    assert "acr_values" not in asked


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"exp": T - 31, "iat": T - 600}, "expired"),
        ({"exp": T + 600, "iat": T + 31}, "future"),
        ({"exp": "soon", "iat": T}, "not a time"),
        ({"exp": True, "iat": T}, "not a time"),
        ({"exp": T + 600, "iat": T, "nbf": T + 31}, "not valid yet"),
        ({"exp": T + 600, "iat": T, "nbf": "later"}, "not a time"),
    ],
)
def test_token_times_are_checked_against_the_brokers_clock(claims: dict[str, object], says: str) -> None:
    with pytest.raises(Unauthenticated, match=says):
        check_token_times(dict(claims), NOW)


def test_token_times_within_the_leeway_pass() -> None:
    check_token_times({"exp": T - 29, "iat": T + 29, "nbf": T + 29}, NOW)


def test_a_step_up_answer_must_show_a_fresh_sign_in_of_the_asked_strength() -> None:
    fresh = {"auth_time": T - 10, "acr": "urn:mfa"}
    check_sign_in_strength(fresh, NOW, max_age=300, acr_values=("urn:mfa",))
    with pytest.raises(Unauthenticated, match="no auth_time"):
        check_sign_in_strength({"acr": "urn:mfa"}, NOW, max_age=300, acr_values=())
    with pytest.raises(Unauthenticated, match="too old"):
        check_sign_in_strength({"auth_time": T - 331}, NOW, max_age=300, acr_values=())
    with pytest.raises(Unauthenticated, match="asked strength"):
        check_sign_in_strength({"auth_time": T, "acr": "urn:pwd"}, NOW, max_age=None, acr_values=("urn:mfa",))
    check_sign_in_strength({}, NOW, max_age=None, acr_values=())  # a plain sign-in asks nothing


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/ui/audit", "/ui/audit"),
        ("/ui/audit?actor=x&role=y", "/ui/audit?actor=x&role=y"),
        (None, "/ui/"),
        ("", "/ui/"),
        ("/ui", "/ui/"),
        ("https://evil.example/ui/", "/ui/"),
        ("//evil.example", "/ui/"),
        ("/ui//evil.example", "/ui/"),
        ("/ui/\\\\evil", "/ui/"),
        ("/ui/../api", "/ui/"),
        ("/ui/oidc/callback", "/ui/"),
        ("/ui/\r\nSet-Cookie: x", "/ui/"),
        ("/ui/" + "a" * 600, "/ui/"),
    ],
)
def test_only_a_path_of_the_consoles_own_is_a_place_to_go_afterwards(asked: str | None, kept: str) -> None:
    assert safe_next(asked) == kept


@pytest.mark.parametrize("issuer", ["https://idp.example", "http://127.0.0.1:8080", "http://localhost:9"])
def test_an_issuer_is_https_or_on_loopback(issuer: str) -> None:
    check_issuer_url(issuer)


@pytest.mark.parametrize("issuer", ["http://idp.example", "ftp://idp.example", "idp.example", "https://"])
def test_an_issuer_in_the_clear_elsewhere_is_refused(issuer: str) -> None:
    with pytest.raises(ValueError, match="https"):
        check_issuer_url(issuer)
