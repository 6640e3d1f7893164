"""The console's sign-in at a real OpenID provider (the certified ``oidc-provider``), protocol
checks first: PKCE with S256, a fresh state and nonce kept server-side, a state that completes
once, in the browser that started it, within ten minutes; a nonce that must come back; an answer
from another issuer; a provider that cannot be reached. Nothing of the protocol is mocked."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from jitgate.auth import oidc_flow
from jitgate.store.tables import oidc_sign_ins
from support.broker import free_port
from support.oidcprovider import ACCOUNTS, WEB_CLIENT, OidcProvider, sign_in, start_provider
from support.ssobroker import (
    CALLBACK,
    SsoBroker,
    cancel_at_provider,
    landing,
    provider_clients,
    sso_broker,
    sso_sign_in,
    start,
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


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_the_authorization_request_carries_pkce_a_fresh_state_and_nonce_and_no_secret(
    broker: SsoBroker,
) -> None:
    with broker.browser() as browser:
        first, second = query(start(browser)), query(start(browser))
    assert first["response_type"] == "code"
    assert first["client_id"] == WEB_CLIENT
    assert first["redirect_uri"] == CALLBACK
    assert first["code_challenge_method"] == "S256"
    assert "openid" in first["scope"].split()
    assert "client_secret" not in first
    assert "code_verifier" not in first
    assert len(first["state"]) >= 43
    assert len(first["nonce"]) >= 43
    assert first["state"] != second["state"]
    assert first["nonce"] != second["nonce"]
    assert first["code_challenge"] != second["code_challenge"]
    with broker.runtime.ctx.db.read() as conn:
        rows = conn.execute(sa.select(oidc_sign_ins)).mappings().all()
    # Only the state's hash is kept; the verifier never left the broker.
    assert {r["state_hash"] for r in rows} == {
        hashlib.sha256(q["state"].encode()).hexdigest() for q in (first, second)
    }
    assert all(r["expires_at"] - r["created_at"] == timedelta(minutes=10) for r in rows)


def test_signing_in_lands_on_the_console_as_the_issuers_subject_with_its_groups(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        done = sso_sign_in(broker, browser, "dave")
        assert landing(done) == "/ui/"
        home = browser.get("/ui/")
    assert "Dave Admin" not in home.text  # the display name is preferred_username, not name
    assert "dave (oidc:dave) (admin)" in home.text
    with broker.runtime.ctx.db.read() as conn:
        (row,) = conn.exec_driver_sql("SELECT identity, oidc FROM web_sessions").mappings().all()
    identity = json.loads(row["identity"]) if isinstance(row["identity"], str) else row["identity"]
    assert identity["name"] == "oidc:dave"
    assert identity["groups"] == ["jitgate-admins", "sre-leads"]
    assert identity["source"] == "oidc"
    assert identity["acr"] == "urn:jitgate:pwd"
    assert identity["amr"] == ["pwd"]
    assert identity["auth_time"] is not None


def test_a_state_completes_once(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        back = sign_in(broker.provider, start(browser), "alice")
        assert browser.get(back).status_code == 200
        again = browser.get(back)
    assert again.status_code == 401
    assert "unknown, used or expired" in again.text


def test_an_unknown_state_is_refused(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        back = sign_in(broker.provider, start(browser), "alice")
        forged = back.replace("state=", "state=x")
        refused = browser.get(forged)
        assert refused.status_code == 401
        assert "unknown, used or expired" in refused.text
        assert "jitgate_session=" not in refused.headers.get("set-cookie", "")


def test_a_sign_in_is_completed_only_in_the_browser_that_started_it(broker: SsoBroker) -> None:
    # An attacker signs in at the provider as themselves and hands the victim the way back:
    # the victim's browser must not end up signed in as the attacker (login CSRF).
    with broker.browser() as attacker, broker.browser() as victim:
        back = sign_in(broker.provider, start(attacker), "carol")
        bare = victim.get(back)
        assert bare.status_code == 401
        assert "another browser" in bare.text
        start(victim)  # the victim has a sign-in cookie of their own
        back = sign_in(broker.provider, start(attacker), "carol")
        own_cookie = victim.get(back)
        assert own_cookie.status_code == 401
        assert "another browser" in own_cookie.text
        assert victim.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
        # The refused attempt spent the state: the attacker cannot use it either.
        assert attacker.get(back).status_code == 401


def test_a_sign_in_expires_after_ten_minutes(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        back = sign_in(broker.provider, start(browser), "alice")
        broker.clock.advance(timedelta(minutes=10, seconds=1))
        late = browser.get(back)
    assert late.status_code == 401
    assert "expired" in late.text


def test_an_id_token_whose_nonce_is_not_the_sign_ins_is_refused(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        authorize = start(browser)
        with broker.runtime.ctx.db.write() as conn:
            conn.execute(oidc_sign_ins.update().values(nonce="another-nonce"))
        refused = browser.get(sign_in(broker.provider, authorize, "alice"))
    assert refused.status_code == 401
    assert "nonce" in refused.text


def test_an_answer_naming_another_issuer_is_refused(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        back = sign_in(broker.provider, start(browser), "alice")
        assert "iss=" in back  # the provider names itself (RFC 9207)
        mixed = back.replace("iss=", "iss=https%3A%2F%2Fevil.example&x=")
        refused = browser.get(mixed)
    assert refused.status_code == 401
    assert "another identity provider" in refused.text


def test_a_cancelled_sign_in_is_one_line_and_quotes_nothing_from_the_provider(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        back = cancel_at_provider(broker.provider, start(browser))
        assert "error=access_denied" in back
        refused = browser.get(back)
        assert refused.status_code == 401
        assert "the sign-in at the identity provider was cancelled or refused" in refused.text
        assert "the user cancelled" not in refused.text  # error_description is the provider's text
        odd = browser.get("/ui/oidc/callback?error=%3Cscript%3Ex%3C%2Fscript%3E&state=s")
        assert odd.status_code == 401
        assert "<script>x" not in odd.text
        assert "the sign-in at the identity provider failed" in odd.text


def test_a_provider_that_cannot_be_reached_gives_one_line(tmp_path: Path, idp: OidcProvider) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with sso_broker(tmp_path / "down", idp, oidc_issuer=closed) as down, down.browser() as browser:
        answer = browser.get("/ui/oidc/start", follow_redirects=False)
        assert answer.status_code == 503
        assert "cannot be reached" in answer.text
        assert "Traceback" not in answer.text
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_discovery_document_naming_another_issuer_is_refused(tmp_path: Path, idp: OidcProvider) -> None:
    # The same provider reached by another name: its document names 127.0.0.1, not localhost.
    alias = idp.issuer.replace("127.0.0.1", "localhost")
    with sso_broker(tmp_path / "alias", idp, oidc_issuer=alias) as broker, broker.browser() as browser:
        answer = browser.get("/ui/oidc/start", follow_redirects=False)
    assert answer.status_code == 503
    assert "names another issuer" in answer.text


def test_sign_ins_under_way_are_bounded_and_a_new_one_pushes_out_the_oldest(
    broker: SsoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oidc_flow, "MAX_UNDER_WAY", 2)
    with broker.browser() as browser:
        oldest = query(start(browser))["state"]
        for _ in range(2):
            broker.clock.advance(timedelta(seconds=1))
            start(browser)
        with broker.runtime.ctx.db.read() as conn:
            hashes = set(conn.execute(sa.select(oidc_sign_ins.c.state_hash)).scalars())
        assert len(hashes) == 2
        assert hashlib.sha256(oldest.encode()).hexdigest() not in hashes
