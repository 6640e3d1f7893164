"""A CI job through the broker's API with its platform's token: it may request exactly the roles
the policy gives its workload, is refused the others, needs a person where the role says so, and
its requests are on record under the workload's name with the token's subject and the rule it
matched (never the token). The broker refuses to start on settings that would blur workloads and
people."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.audit.query import query
from jitgate.errors import PolicyFileError
from jitgate.runtime import Runtime, build_runtime
from jitgate.settings import Settings
from jitgate.workflow.users import add_user
from support.ci_issuer import CiIssuer, ci_issuer

POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1}}
  - {{name: db-1, kind: ssh, address: 127.0.0.1}}
roles:
  - name: deploy
    targets: {{names: [web-1]}}
    ssh: {{logins: [deploy]}}
    max_duration: 30m
    requesters: [user:workload:orders-deploy]
    approval: auto
  - name: migrate
    targets: {{names: [db-1]}}
    ssh: {{logins: [migrate]}}
    max_duration: 15m
    requesters: [group:deployers]
    approvers: [user:bob]
  - name: prod-root
    targets: {{names: [web-1]}}
    ssh: {{logins: [root]}}
    max_duration: 1h
    requesters: [group:sre]
    approval: auto
workloads:
  - name: orders-deploy
    description: deploys of acme/orders from main to production
    issuer: {issuer}
    audience: jitgate
    claims: {{repository: acme/orders, ref: refs/heads/main, environment: production}}
    groups: [deployers]
"""


@pytest.fixture(scope="module")
def ci() -> Iterator[CiIssuer]:
    with ci_issuer() as running:
        yield running


def settings_for(tmp_path: Path, issuer: str, **more: object) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(issuer=issuer))
    return Settings(data_dir=tmp_path / "data", policy_file=policy, **more)  # type: ignore[arg-type]


@pytest.fixture
def broker(ci: CiIssuer, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, str]]:
    rt = build_runtime(settings_for(tmp_path, ci.issuer))
    _, bob = add_user(rt.ctx.db, rt.ctx.audit, rt.ctx.clock, actor="test", name="bob", groups=[])
    with TestClient(create_app(rt, run_scheduler=False)) as client:
        yield client, rt, bob
    rt.ctx.db.dispose()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_the_job_gets_exactly_its_role_and_not_one_its_workload_does_not_match(
    broker: tuple[TestClient, Runtime, str], ci: CiIssuer
) -> None:
    client, _, _ = broker
    job = bearer(ci.sign(ci.github_job()))
    me = client.get("/api/v1/whoami", headers=job).json()
    assert (me["name"], me["source"], me["groups"], me["admin"]) == (
        "workload:orders-deploy",
        "workload",
        ["deployers"],
        False,
    )
    roles = {r["name"]: r["may_request"] for r in client.get("/api/v1/roles", headers=job).json()}
    assert roles == {"deploy": True, "migrate": True, "prod-root": False}
    made = client.post("/api/v1/requests", json={"role": "deploy", "reason": "release 7"}, headers=job)
    assert made.status_code == 201
    assert made.json()["state"] == "ACTIVE"
    assert made.json()["grant"]["holder"] == "workload:orders-deploy"
    assert made.json()["grant"]["elevations_pending"] == 0
    refused = client.post("/api/v1/requests", json={"role": "prod-root"}, headers=job)
    assert refused.status_code == 403


def test_a_job_cannot_turn_its_short_token_into_a_standing_gateway_key(
    broker: tuple[TestClient, Runtime, str], ci: CiIssuer
) -> None:
    client, _, _ = broker
    key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    answer = client.post(
        "/api/v1/keys", json={"public_key": key.decode()}, headers=bearer(ci.sign(ci.github_job()))
    )
    assert answer.status_code == 403


def test_a_job_of_another_branch_gets_no_role_at_all(
    broker: tuple[TestClient, Runtime, str], ci: CiIssuer
) -> None:
    client, rt, _ = broker
    feature = bearer(ci.sign(ci.github_job(ref="refs/heads/feature", environment=None)))
    answer = client.post("/api/v1/requests", json={"role": "deploy"}, headers=feature)
    assert answer.status_code == 401
    assert "matches no workload rule" in answer.json()["detail"]
    with rt.ctx.db.read() as conn:
        assert not list(query(conn, action="request.created"))


def test_a_role_with_approvers_waits_for_a_person_and_the_record_names_the_tokens_subject(
    broker: tuple[TestClient, Runtime, str], ci: CiIssuer
) -> None:
    client, rt, bob = broker
    claims = ci.github_job()
    token = ci.sign(claims)
    made = client.post(
        "/api/v1/requests", json={"role": "migrate", "reason": "schema 12"}, headers=bearer(token)
    )
    assert made.json()["state"] == "PENDING"
    request_id = made.json()["id"]
    own_vote = client.post(
        f"/api/v1/requests/{request_id}/reviews", json={"verdict": "approve"}, headers=bearer(token)
    )
    assert own_vote.status_code == 403  # a job never approves its own request
    approved = client.post(
        f"/api/v1/requests/{request_id}/reviews", json={"verdict": "approve"}, headers=bearer(bob)
    )
    assert approved.json()["state"] == "ACTIVE"
    with rt.ctx.db.read() as conn:
        (created,) = query(conn, action="request.created")
        everything = [e.details for e in query(conn)]
    assert created.actor == "workload:orders-deploy"
    assert created.details["workload"] == {
        "rule": "orders-deploy",
        "issuer": ci.issuer,
        "sub": "repo:acme/orders:environment:production",
        "jti": claims["jti"],
    }
    assert token not in repr(everything)
    assert token.split(".")[2] not in repr(everything)


def test_the_broker_refuses_to_start_when_a_workload_issuer_is_the_peoples(
    ci: CiIssuer, tmp_path: Path
) -> None:
    with pytest.raises(PolicyFileError, match="JITGATE_OIDC_ISSUER"):
        build_runtime(settings_for(tmp_path, ci.issuer, oidc_issuer=ci.issuer, oidc_audience="jitgate"))


def test_the_broker_refuses_to_start_with_people_in_the_workload_namespace(
    ci: CiIssuer, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path,
        ci.issuer,
        oidc_issuer="https://login.example",
        oidc_audience="jitgate",
        oidc_namespace="workload",
    )
    with pytest.raises(PolicyFileError, match="JITGATE_OIDC_NAMESPACE"):
        build_runtime(settings)


def test_a_request_made_in_the_console_with_a_job_token_is_on_record_as_the_workload(
    broker: tuple[TestClient, Runtime, str], ci: CiIssuer
) -> None:
    _, rt, _ = broker
    claims = ci.github_job()
    with TestClient(create_app(rt, run_scheduler=False), base_url="https://jitgate.test") as console:
        form = re.search(r'name="csrf" value="([0-9a-f]+)"', console.get("/ui/login").text)
        assert form is not None
        signed_in = console.post("/ui/login", data={"token": ci.sign(claims), "csrf": form.group(1)})
        assert "workload:orders-deploy" in signed_in.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', console.get("/ui/").text)
        assert csrf is not None
        done = console.post("/ui/requests", data={"csrf": csrf.group(1), "role": "deploy", "duration": "10m"})
        assert "is ACTIVE" in done.text
    with rt.ctx.db.read() as conn:
        (created,) = query(conn, action="request.created")
    assert created.actor == "workload:orders-deploy"
    assert created.details["workload"]["sub"] == claims["sub"]
    assert created.details["workload"]["jti"] == claims["jti"]
