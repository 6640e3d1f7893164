"""Step-up at elevation through the API (RFC 9470): an API token proves no sign-in, so a role that
demands one answers 401 with ``insufficient_user_authentication``, ``max_age`` and ``acr_values``
in ``WWW-Authenticate`` and in the problem body, before anything is written; an OIDC token from a
fresh multi-factor sign-in at the real provider is enough."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from jitgate.audit.query import query
from jitgate.domain.identity import SYSTEM
from jitgate.store.tables import requests, web_sessions
from jitgate.workflow.users import add_user
from support.oidcprovider import ACCOUNTS, MFA_ACR, WEB_CLIENT, OidcProvider, start_provider
from support.ssobroker import SsoBroker, provider_clients, sso_broker, sso_sign_in


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with start_provider(tmp_path_factory.mktemp("idp"), provider_clients()) as provider:
        yield provider


@pytest.fixture
def broker(tmp_path: Path, idp: OidcProvider) -> Iterator[SsoBroker]:
    idp.set_accounts(ACCOUNTS)
    # The console's client id is also the audience of bearer tokens here, so that its ID tokens
    # (real ones, from the provider) can be presented to the API.
    with sso_broker(tmp_path, idp, oidc_audience=WEB_CLIENT, oidc_jwks_url=idp.jwks_url) as found:
        yield found


def token_of(broker: SsoBroker, name: str, groups: list[str]) -> str:
    ctx = broker.runtime.ctx
    return add_user(ctx.db, ctx.audit, broker.clock, actor=SYSTEM.name, name=name, groups=groups)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_api_token_gets_a_step_up_challenge_and_nothing_is_written(broker: SsoBroker) -> None:
    token = token_of(broker, "alice", ["engineers"])
    with broker.browser() as api:
        answer = api.post(
            "/api/v1/requests",
            json={"role": "prod-root", "reason": "INC-1", "duration": "30m"},
            headers=bearer(token),
        )
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["code"] == "step_up_required"
    assert body["max_age"] == 300
    assert body["acr_values"] == [MFA_ACR]
    assert "sign in with SSO" in body["detail"]
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_user_authentication", error_description="')
    assert challenge.endswith(f', max_age=300, acr_values="{MFA_ACR}"')
    with broker.runtime.ctx.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(requests)).scalar_one() == 0
        (refusal,) = query(conn, action="access.refused")
    assert refusal.role == "prod-root"


def test_approving_with_an_api_token_gets_the_challenge_and_denying_does_not(broker: SsoBroker) -> None:
    alice = token_of(broker, "alice", ["engineers"])
    bob = token_of(broker, "bob", ["sre-leads"])
    with broker.browser() as api:
        made = [
            api.post(
                "/api/v1/requests",
                json={"role": "prod-db", "reason": f"INC-{n}", "duration": "30m"},
                headers=bearer(alice),
            ).json()["id"]
            for n in (1, 2)
        ]
        approve = api.post(
            f"/api/v1/requests/{made[0]}/reviews", json={"verdict": "approve"}, headers=bearer(bob)
        )
        deny = api.post(
            f"/api/v1/requests/{made[1]}/reviews",
            json={"verdict": "deny", "comment": "not now"},
            headers=bearer(bob),
        )
    assert approve.status_code == 401
    assert approve.json()["code"] == "step_up_required"
    assert approve.json()["max_age"] is None
    assert "max_age" not in approve.headers["www-authenticate"]
    assert approve.headers["www-authenticate"].endswith(f'acr_values="{MFA_ACR}"')
    assert deny.status_code == 200
    assert deny.json()["state"] == "DENIED"
    with broker.runtime.ctx.db.read() as conn:
        reviewed = query(conn, action="review.denied")
    assert "sign_in" not in reviewed[0].details  # an API token says nothing about a sign-in


def test_an_oidc_token_from_a_fresh_mfa_sign_in_is_enough(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice", otp="123456")
    with broker.runtime.ctx.db.read() as conn:
        (raw,) = conn.execute(sa.select(web_sessions.c.oidc)).scalars().all()
    id_token = (json.loads(raw) if isinstance(raw, str) else raw)["id_token"]
    with broker.browser() as api:
        made = api.post(
            "/api/v1/requests",
            json={"role": "prod-root", "reason": "INC-9", "duration": "30m"},
            headers=bearer(id_token),
        )
    assert made.status_code == 201, made.text
    assert made.json()["requester"] == "oidc:alice"
    with broker.runtime.ctx.db.read() as conn:
        (created,) = query(conn, action="request.created")
    assert created.details["sign_in"]["acr"] == MFA_ACR


def test_the_problem_body_of_other_refusals_is_unchanged(broker: SsoBroker) -> None:
    with TestClient(broker.browser().app) as api:
        answer = api.get("/api/v1/whoami")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert set(answer.json()) == {"type", "title", "status", "code", "detail"}


def id_token_of(broker: SsoBroker, login: str) -> str:
    """The ID token of the newest console session (a real one, from the provider)."""
    with broker.runtime.ctx.db.read() as conn:
        rows = (
            conn.execute(sa.select(web_sessions.c.oidc).order_by(web_sessions.c.created_at)).scalars().all()
        )
    state = [json.loads(raw) if isinstance(raw, str) else raw for raw in rows][-1]
    assert state["sub"] == login
    token: str = state["id_token"]
    return token


def test_extending_a_grant_demands_the_step_up_again_once_the_sign_in_is_old(broker: SsoBroker) -> None:
    with broker.browser() as browser:
        sso_sign_in(broker, browser, "alice", otp="123456")
        alice = id_token_of(broker, "alice")
        sso_sign_in(broker, browser, "bob", otp="123456")
        bob = id_token_of(broker, "bob")
        made = browser.post(
            "/api/v1/requests",
            json={"role": "prod-root", "reason": "INC-4", "duration": "30m"},
            headers=bearer(alice),
        ).json()
        approved = browser.post(
            f"/api/v1/requests/{made['id']}/reviews", json={"verdict": "approve"}, headers=bearer(bob)
        ).json()
        assert approved["state"] == "ACTIVE"
        grant = approved["grant"]["id"]
        broker.clock.advance(timedelta(minutes=6))  # the ID token still holds; its sign-in is old
        extend = browser.post(
            f"/api/v1/grants/{grant}/extend",
            json={"duration": "15m", "reason": "INC-4"},
            headers=bearer(alice),
        )
    assert extend.status_code == 401
    assert extend.json()["code"] == "step_up_required"
    assert "your sign-in is older" in extend.json()["detail"]
