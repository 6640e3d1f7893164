"""Step-up at elevation in the console, at a real OpenID provider: a role that demands a fresh,
multi-factor sign-in sends a password-only session back to the provider with ``max_age`` and
``acr_values``; after signing in again the request goes through and the audit says how the
requester signed in. An old sign-in, a sign-in weaker than asked, an approval, and another person
signing in at the step-up are each covered."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from jitgate.audit.query import query
from jitgate.domain.identity import SYSTEM
from jitgate.workflow.users import add_user
from support.oidcprovider import ACCOUNTS, MFA_ACR, PASSWORD_ACR, OidcProvider, sign_in, start_provider
from support.ssobroker import (
    CALLBACK,
    SsoBroker,
    landing,
    page_csrf,
    provider_clients,
    signed_in_at,
    sso_broker,
    sso_sign_in,
)

MFA = "123456"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with start_provider(tmp_path_factory.mktemp("idp"), provider_clients()) as provider:
        yield provider


@pytest.fixture
def broker(tmp_path: Path, idp: OidcProvider) -> Iterator[SsoBroker]:
    idp.set_accounts(ACCOUNTS)
    with sso_broker(tmp_path, idp) as found:
        yield found


def ask(browser: TestClient, role: str) -> httpx.Response:
    answer: httpx.Response = browser.post(
        "/ui/requests",
        data={"csrf": page_csrf(browser), "role": role, "duration": "30m", "reason": "INC-7"},
        follow_redirects=False,
    )
    return answer


def review(browser: TestClient, request_id: str, verdict: str) -> httpx.Response:
    answer: httpx.Response = browser.post(
        f"/ui/requests/{request_id}/review",
        data={"csrf": page_csrf(browser), "verdict": verdict, "comment": f"{verdict} from the console"},
        follow_redirects=False,
    )
    return answer


def next_stop(answer: httpx.Response) -> str:
    """Where a form's answer sends the browser: a redirect, or a page going on by itself (the way
    to the provider, since the CSP's form-action stops redirects off the site after a form)."""
    if answer.status_code == 303:
        location: str = answer.headers["location"]
        return location
    return landing(answer)


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def details(broker: SsoBroker, action: str) -> dict[str, Any]:
    with broker.runtime.ctx.db.read() as conn:
        (event,) = query(conn, action=action)
    return event.details


def created_id(page: str) -> str:
    match = re.search(r"request (r-[0-9a-f]+) is (PENDING|ACTIVE)", page)
    assert match is not None, page
    return match.group(1)


def test_a_password_sign_in_is_sent_back_for_a_fresh_mfa_one_and_then_the_request_goes_through(
    broker: SsoBroker,
) -> None:
    with broker.browser() as browser, httpx.Client(timeout=10) as idp_browser:
        sso_sign_in(broker, browser, "alice", idp=idp_browser)
        refused = ask(browser, "prod-root")
        assert refused.status_code == 200
        assert re.search(r"<script(?![^>]*\ssrc=)", refused.text) is None  # no inline script
        assert "requesting prod-root needs a sign-in within 5m" in refused.text
        assert "then submit it again" in refused.text
        step_up = next_stop(refused)
        assert step_up.startswith("/ui/oidc/start?")
        assert params(step_up) == {"next": "/ui/", "max_age": "300", "acr_values": MFA_ACR}
        to_idp = browser.get(step_up, follow_redirects=False).headers["location"]
        asked = params(to_idp)
        assert asked["max_age"] == "300"
        assert asked["acr_values"] == MFA_ACR
        assert "login" in asked["prompt"].split()  # the provider's own session does not count
        back = sign_in(broker.provider, to_idp, "alice", otp=MFA, browser=idp_browser)
        assert back.startswith(CALLBACK)
        assert landing(browser.get(back)) == "/ui/"
        home = browser.get("/ui/")
        assert "You signed in again at the identity provider" in home.text
        assert "submit the request or review again" in home.text
        done = browser.post(
            "/ui/requests",
            data={"csrf": page_csrf(browser), "role": "prod-root", "duration": "30m", "reason": "INC-7"},
        )
        assert "is PENDING" in done.text
    signed = details(broker, "request.created")["sign_in"]
    assert signed["acr"] == MFA_ACR
    assert signed["amr"] == ["pwd", "otp"]
    assert signed["auth_time"] is not None
    with broker.runtime.ctx.db.read() as conn:
        refusals = [e for e in query(conn, action="access.refused") if e.role == "prod-root"]
    assert len(refusals) == 1  # the first attempt is on record too


def test_a_role_without_requirements_records_how_the_requester_signed_in(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice")
        assert (
            "is PENDING"
            in browser.post(
                "/ui/requests",
                data={"csrf": page_csrf(browser), "role": "prod-shell", "duration": "30m", "reason": "INC-1"},
            ).text
        )
    signed = details(broker, "request.created")["sign_in"]
    assert signed["acr"] == PASSWORD_ACR
    assert signed["amr"] == ["pwd"]


def test_a_sign_in_older_than_fresh_login_must_be_made_again(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice", otp=MFA)
        assert next_stop(ask(browser, "prod-root")).startswith("/ui/requests/")  # created: its page
        broker.clock.set(signed_in_at(broker) + timedelta(minutes=5, seconds=1))
        stale = ask(browser, "prod-root")
        assert "your sign-in is older" in stale.text
        assert params(next_stop(stale)) == {"next": "/ui/", "max_age": "300", "acr_values": MFA_ACR}


def test_a_provider_that_signs_in_less_strongly_than_asked_is_refused(broker: SsoBroker) -> None:
    # The test provider, like many, ignores acr_values: the broker checks what comes back.
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice")
        step_up = next_stop(ask(browser, "prod-root"))
        weak = sso_sign_in(broker, browser, "alice", path=step_up)
        assert weak.status_code == 401
        assert "not of the asked strength" in weak.text
        assert next_stop(ask(browser, "prod-root")).startswith("/ui/oidc/start?")  # still the old, weak one


def test_approving_demands_the_step_up_and_denying_does_not(broker: SsoBroker) -> None:
    with broker.browser() as alice:
        sso_sign_in(broker, alice, "alice")
        first = created_id(alice.post(
            "/ui/requests",
            data={"csrf": page_csrf(alice), "role": "prod-db", "duration": "30m", "reason": "INC-2"},
        ).text)  # fmt: skip
        second = created_id(alice.post(
            "/ui/requests",
            data={"csrf": page_csrf(alice), "role": "prod-db", "duration": "30m", "reason": "INC-3"},
        ).text)  # fmt: skip
    with broker.browser() as bob:
        sso_sign_in(broker, bob, "bob")
        refused = review(bob, first, "approve")
        step_up = next_stop(refused)
        assert params(step_up) == {"next": f"/ui/requests/{first}", "acr_values": MFA_ACR}
        denied = review(bob, second, "deny")
        assert denied.headers["location"] == f"/ui/requests/{second}"
        page = bob.get(denied.headers["location"]).text
        assert f"request {second} is DENIED" in page, re.findall(r"role=\"(?:alert|status)\">[^<]*", page)
        sso_sign_in(broker, bob, "bob", otp=MFA, path=step_up)
        approved_page = review(bob, first, "approve")
        assert f"request {first} is ACTIVE" in bob.get(approved_page.headers["location"]).text
    approved = details(broker, "review.approved")["sign_in"]
    assert approved["acr"] == MFA_ACR
    assert approved["amr"] == ["pwd", "otp"]
    assert details(broker, "review.denied")["sign_in"]["acr"] == PASSWORD_ACR


def test_another_person_signing_in_at_the_step_up_gets_a_session_of_their_own(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice")
        alices = browser.cookies.get("jitgate_session") or ""
        step_up = next_stop(ask(browser, "prod-root"))
        sso_sign_in(broker, browser, "carol", otp=MFA, path=step_up)
        home = browser.get("/ui/")
        assert "carol (oidc:carol)" in home.text
        assert "oidc:alice" not in home.text
        assert browser.cookies.get("jitgate_session") != alices
    with broker.browser() as old:
        old.cookies.set("jitgate_session", alices, domain="testserver.local", path="/ui")
        assert "alice (oidc:alice)" in old.get("/ui/").text
        # Alice's own session was not strengthened by Carol's sign-in.
        assert next_stop(ask(old, "prod-root")).startswith("/ui/oidc/start?")


def test_a_token_session_without_single_sign_on_is_told_to_sign_in_with_sso(
    tmp_path: Path, idp: OidcProvider
) -> None:
    with sso_broker(tmp_path, idp, oidc_client_id=None, oidc_audience="api") as plain:
        _, token = add_user(
            plain.runtime.ctx.db,
            plain.runtime.ctx.audit,
            plain.clock,
            actor=SYSTEM.name,
            name="alice",
            groups=["engineers"],
        )
        with plain.browser() as browser:
            login = browser.get("/ui/login")
            match = re.search(r'name="csrf" value="([0-9a-f]+)"', login.text)
            assert match is not None
            browser.post("/ui/login", data={"token": token, "csrf": match.group(1)})
            refused = ask(browser, "prod-root")
            assert refused.headers["location"] == "/ui/"
            page = browser.get("/ui/").text
    assert "an API token cannot prove" in page
    assert "sign in with SSO" in page
