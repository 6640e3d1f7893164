"""The HTTP API end to end through a real app and real token authentication: status codes, JSON
error bodies, and the same rules as the workflow underneath."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.runtime import Runtime
from jitgate.workflow.users import add_user


@pytest.fixture
def tokens(runtime: Runtime, clock: FrozenClock) -> dict[str, str]:
    people = {"alice": ["engineers"], "bob": ["sre-leads"], "carol": ["engineers", "oncall"]}
    out = {}
    for name, groups in people.items():
        _, out[name] = add_user(
            runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name=name, groups=groups
        )
    _, out["admin"] = add_user(
        runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name="admin", groups=[], admin=True
    )
    return out


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_openapi_and_metrics_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/requests" in paths
    # answered by the fast path, still documented with its body
    certificate = paths["/api/v1/ssh/certificates"]["post"]["requestBody"]["content"]["application/json"]
    assert {"target", "public_key", "login"} <= set(certificate["schema"]["properties"])
    assert "jitgate_active_grants 0.0" in client.get("/metrics").text
    assert client.get("/.well-known/jwks.json").json()["keys"][0]["crv"] == "Ed25519"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic abc", "Bearer jg_short", "Bearer jg_" + "A" * 43, "Bearer something-else"],
)
def test_garbage_tokens_get_401_with_a_json_error(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/requests", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthenticated"
    assert "\n" not in response.json()["detail"]


def test_request_approve_and_grant_over_http(client: TestClient, tokens: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/requests",
        json={"role": "prod-shell", "reason": "INC-7", "duration": "30m"},
        headers=auth(tokens["alice"]),
    )
    assert created.status_code == 201
    body = created.json()
    assert body["state"] == "PENDING"
    rid = body["id"]
    assert client.get("/api/v1/requests?reviewable=true", headers=auth(tokens["bob"])).json()[0]["id"] == rid
    own = client.post(
        f"/api/v1/requests/{rid}/reviews", json={"verdict": "approve"}, headers=auth(tokens["alice"])
    )
    assert own.status_code == 403
    approved = client.post(
        f"/api/v1/requests/{rid}/reviews", json={"verdict": "approve"}, headers=auth(tokens["bob"])
    )
    assert approved.status_code == 200
    grant = approved.json()["grant"]
    assert approved.json()["state"] == "ACTIVE"
    assert grant["expires_at"].endswith("Z")
    again = client.post(
        f"/api/v1/requests/{rid}/reviews", json={"verdict": "approve"}, headers=auth(tokens["bob"])
    )
    assert again.status_code == 409
    mine = client.get("/api/v1/grants", headers=auth(tokens["alice"])).json()
    assert [g["id"] for g in mine] == [grant["id"]]
    assert client.get(f"/api/v1/grants/{grant['id']}", headers=auth(tokens["carol"])).status_code == 404
    revoked = client.post(f"/api/v1/grants/{grant['id']}/revoke", json={}, headers=auth(tokens["alice"]))
    assert revoked.json()["state"] == "REVOKED"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"role": "nope"}, 404, "not_found"),
        ({"role": "prod-shell", "reason": "INC-1", "duration": "forever"}, 400, "invalid_input"),
        ({"role": "prod-shell", "reason": "INC-1", "duration": "0s"}, 400, "invalid_input"),
        ({"role": "prod-shell", "reason": "INC-1", "duration": "5h"}, 403, "forbidden"),
        ({"role": "prod-shell", "reason": "INC-1", "requester": "bob"}, 403, "forbidden"),
        ({"role": "prod-shell", "surprise": 1}, 422, "invalid_request"),
        ({"reason": "INC-1"}, 422, "invalid_request"),
        ({"role": "prod-shell", "reason": "x" * 3000}, 422, "invalid_request"),
    ],
)
def test_bad_requests_get_the_status_that_fits(
    client: TestClient, tokens: dict[str, str], body: dict[str, object], status: int, code: str
) -> None:
    response = client.post("/api/v1/requests", json=body, headers=auth(tokens["alice"]))
    assert response.status_code == status
    assert response.json()["code"] == code
    assert client.get("/api/v1/requests?mine=true", headers=auth(tokens["alice"])).json() == []


def test_malformed_and_huge_bodies(client: TestClient, tokens: dict[str, str]) -> None:
    bad = client.post(
        "/api/v1/requests",
        content=b"{not json",
        headers={**auth(tokens["alice"]), "Content-Type": "application/json"},
    )
    assert bad.status_code == 422
    huge = client.post(
        "/api/v1/requests",
        content=b"x" * 200_000,
        headers={**auth(tokens["alice"]), "Content-Type": "application/json"},
    )
    assert huge.status_code == 413


def test_unknown_ids_are_404(client: TestClient, tokens: dict[str, str]) -> None:
    assert client.get("/api/v1/requests/r-nope", headers=auth(tokens["alice"])).status_code == 404
    assert (
        client.post("/api/v1/grants/g-nope/revoke", json={}, headers=auth(tokens["admin"])).status_code == 404
    )


def test_audit_is_visible_to_admins_whole_and_to_others_in_part(
    client: TestClient, tokens: dict[str, str]
) -> None:
    client.post("/api/v1/requests", json={"role": "stage-shell"}, headers=auth(tokens["alice"]))
    everything = client.get("/api/v1/audit", headers=auth(tokens["admin"])).json()
    assert {"policy.loaded", "user.added", "request.created", "grant.activated"} <= {
        e["action"] for e in everything
    }
    own = client.get("/api/v1/audit", headers=auth(tokens["alice"])).json()
    assert {e["actor"] for e in own} == {"alice"}
    assert client.get("/api/v1/audit/verify", headers=auth(tokens["admin"])).json()["ok"] is True
    assert client.get("/api/v1/audit/verify", headers=auth(tokens["alice"])).status_code == 403


def test_no_token_or_secret_in_the_audit_log(
    client: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    from jitgate.audit.query import query

    client.post("/api/v1/requests", json={"role": "stage-shell"}, headers=auth(tokens["alice"]))
    with runtime.ctx.db.read() as conn:
        text = "\n".join(str(e.to_json()) for e in query(conn, limit=1000))
    for token in tokens.values():
        assert token not in text
        assert token[3:20] not in text
