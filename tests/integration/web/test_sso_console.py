"""The console with single sign-on at a real OpenID provider: the sign-in page offers it beside the
token form, the cookies are the ones a cross-site return needs (and no more), the way back is a
page without script that goes on to a path of the console's own only, signing out ends the session
here and at the provider, and the provider is asked again with the refresh token."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from jitgate.store.tables import oidc_sign_ins, web_sessions
from support.oidcprovider import ACCOUNTS, WEB_CLIENT, OidcProvider, start_provider
from support.ssobroker import (
    SIGNED_OUT,
    SsoBroker,
    landing,
    page_csrf,
    provider_clients,
    sso_broker,
    sso_sign_in,
)


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with start_provider(tmp_path_factory.mktemp("idp"), provider_clients()) as provider:
        yield provider


@pytest.fixture
def broker(tmp_path: Path, idp: OidcProvider) -> Iterator[SsoBroker]:
    idp.set_accounts(ACCOUNTS)
    with sso_broker(tmp_path, idp) as found:
        yield found


def cookie(response: httpx.Response, name: str) -> dict[str, str]:
    (line,) = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    value, *attributes = (part.strip() for part in line.split(";"))
    out = {"value": value.partition("=")[2]}
    for attribute in attributes:
        key, _, setting = attribute.partition("=")
        out[key.lower()] = setting or key
    return out


def stored_identity(broker: SsoBroker) -> dict[str, Any]:
    with broker.runtime.ctx.db.read() as conn:
        (raw,) = conn.execute(sa.select(web_sessions.c.identity)).scalars().all()
    found: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
    return found


def test_the_sign_in_page_offers_sso_and_keeps_the_token_form(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        page = browser.get("/ui/login")
    assert 'href="/ui/oidc/start"' in page.text
    assert "Sign in with SSO" in page.text
    assert 'name="token"' in page.text


def test_the_cookies_are_lax_for_the_sign_in_only_and_strict_for_the_session(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        started = browser.get("/ui/oidc/start", follow_redirects=False)
        flow = cookie(started, "jitgate_oidc")
        assert flow["samesite"].lower() == "lax"  # arrives with the provider's cross-site return
        assert flow["path"] == "/ui/oidc"
        assert flow["httponly"] == "HttpOnly"
        assert int(flow["max-age"]) <= 600
        done = sso_sign_in(broker, browser, "alice")
        session = cookie(done, "jitgate_session")
        assert session["samesite"].lower() == "strict"
        assert session["path"] == "/ui"
        assert session["httponly"] == "HttpOnly"
        assert cookie(done, "jitgate_oidc")["value"] in {"", '""'}  # spent


def test_the_way_back_is_a_page_without_script_that_goes_on_by_itself(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        done = sso_sign_in(broker, browser, "alice")
    # A redirect would belong to the provider's cross-site navigation, which does not carry the
    # Strict session cookie; this page starts a same-site one.
    assert done.status_code == 200
    assert landing(done) == "/ui/"
    assert re.search(r"<script(?![^>]*\ssrc=)", done.text) is None  # no inline script
    assert "style=" not in done.text
    assert 'href="/ui/"' in done.text
    assert done.headers["content-security-policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in done.headers["content-security-policy"]
    assert done.headers["referrer-policy"] == "same-origin"  # the code in the URL goes to no other site
    assert done.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("asked", "lands"),
    [
        ("/ui/audit", "/ui/audit"),
        ("/ui/audit?actor=oidc%3Aalice", "/ui/audit?actor=oidc%3Aalice"),
        ("https://evil.example/", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("/ui//evil.example", "/ui/"),
        ("/ui/\\evil.example", "/ui/"),
        ("/ui/../api/v1/whoami", "/ui/"),
        ("/api/v1/whoami", "/ui/"),
        ("javascript:alert(1)", "/ui/"),
        ("/ui/oidc/start", "/ui/"),
        ('/ui/"><script>', "/ui/"),
    ],
)
def test_the_browser_goes_on_only_to_a_path_of_the_consoles_own(
    broker: SsoBroker, asked: str, lands: str
) -> None:
    with broker.browser() as browser:
        path = "/ui/oidc/start?" + httpx.QueryParams({"next": asked}).__str__()
        assert landing(sso_sign_in(broker, browser, "alice", path=path)) == lands


def test_signing_out_ends_the_session_and_signs_out_at_the_provider(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice")
        kept = browser.cookies.get("jitgate_session") or ""
        with broker.browser() as copy:
            copy.cookies.set("jitgate_session", kept, domain="testserver.local", path="/ui")
            assert copy.get("/ui/", follow_redirects=False).status_code == 200  # the cookie works
        csrf = page_csrf(browser)
        out = browser.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
        # A page that goes on by itself: the CSP's form-action stops a redirect off the site.
        location = landing(out)
        assert location.startswith(broker.provider.discovery()["end_session_endpoint"] + "?")
        params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert params["post_logout_redirect_uri"] == SIGNED_OUT
        assert params["client_id"] == WEB_CLIENT
        assert params["id_token_hint"].startswith("eyJ")
        # The provider takes the hint and the way back (it asks to confirm; a bad one is a 400).
        assert httpx.get(location, timeout=10).status_code == 200
    with broker.browser() as replay:
        replay.cookies.set("jitgate_session", kept, domain="testserver.local", path="/ui")
        refused = replay.get("/ui/", follow_redirects=False)
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/ui/login")
    with broker.runtime.ctx.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar_one() == 0


def test_the_provider_is_asked_again_and_its_groups_replace_the_old(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice")
        assert stored_identity(broker)["groups"] == ["engineers"]
        broker.provider.set_accounts({**ACCOUNTS, "alice": {**ACCOUNTS["alice"], "groups": ["oncall"]}})
        broker.clock.advance(timedelta(seconds=299))
        assert browser.get("/ui/").status_code == 200
        assert stored_identity(broker)["groups"] == ["engineers"]  # not yet due
        broker.clock.advance(timedelta(seconds=2))
        page = browser.get("/ui/")
        assert page.status_code == 200
        assert "oidc:alice" in page.text
        identity = stored_identity(broker)
    assert identity["groups"] == ["oncall"]
    assert identity["acr"] == "urn:jitgate:pwd"  # a refresh proves no new sign-in


def test_a_refresh_the_provider_refuses_ends_the_session(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice")
        assert browser.get("/ui/").status_code == 200
        gone = {name: account for name, account in ACCOUNTS.items() if name != "alice"}
        broker.provider.set_accounts(gone)  # the user left the company
        broker.clock.advance(timedelta(minutes=6))
        ended = browser.get("/ui/", follow_redirects=False)
        assert ended.status_code == 303
        assert ended.headers["location"] == "/ui/login"
        broker.provider.set_accounts(ACCOUNTS)  # back again: the ended session stays ended
        assert browser.get("/ui/", follow_redirects=False).status_code == 303
    with broker.runtime.ctx.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(web_sessions)).scalar_one() == 0


def test_without_single_sign_on_configured_the_sso_pages_say_so(tmp_path: Path, idp: OidcProvider) -> None:
    with (
        sso_broker(tmp_path, idp, oidc_client_id=None, oidc_audience="api") as plain,
        plain.browser() as browser,
    ):
        assert "Sign in with SSO" not in browser.get("/ui/login").text
        answer = browser.get("/ui/oidc/start", follow_redirects=False)
        assert answer.status_code == 404
        assert "not configured" in answer.text
        assert browser.get("/ui/oidc/callback?code=x&state=y").status_code == 404
        with plain.runtime.ctx.db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(oidc_sign_ins)).scalar_one() == 0
