"""Huge durations, extreme dates and outsize numbers anywhere the API takes them: a one-line 4xx,
and where the step audits its refusals, an ``access.refused`` record. Never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jitgate.api.app import create_app
from jitgate.auth.tokens import new_token
from jitgate.clock import FrozenClock
from jitgate.domain.identity import SYSTEM
from jitgate.runtime import Runtime
from jitgate.workflow.users import add_user

HUGE_DURATIONS = ["99999999999w", "999999999d", "521w", "9" * 31 + "s", "nan", "inf", "-5m", "1e9s", "٣m"]
EXTREME_TIMES = [
    "0001-01-01T00:00:00+14:00",  # no UTC form: before year 1
    "9999-12-31T23:59:59-14:00",  # no UTC form: after year 9999
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2026-12-01T10:00:00",  # no zone
]


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime, run_scheduler=False), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def alice(runtime: Runtime, clock: FrozenClock) -> dict[str, str]:
    _, token = add_user(
        runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name="alice", groups=["engineers"]
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(runtime: Runtime, clock: FrozenClock) -> dict[str, str]:
    _, token = add_user(
        runtime.ctx.db, runtime.ctx.audit, clock, actor=SYSTEM.name, name="admin", groups=[], admin=True
    )
    return {"Authorization": f"Bearer {token}"}


def one_line_refusal(response: Any) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert "\n" not in problem["detail"]
    assert len(problem["detail"]) < 200
    return problem


def refusals(client: TestClient, admin: dict[str, str], attempted: str) -> list[dict[str, Any]]:
    found = client.get("/api/v1/audit", params={"action": "access.refused", "limit": 1000}, headers=admin)
    return [e for e in found.json() if e["details"]["attempted"] == attempted]


@pytest.mark.parametrize("duration", HUGE_DURATIONS)
def test_a_request_for_a_huge_or_meaningless_duration_is_refused_and_audited(
    client: TestClient, alice: dict[str, str], admin: dict[str, str], duration: str
) -> None:
    body = {"role": "stage-shell", "duration": duration}
    problem = one_line_refusal(client.post("/api/v1/requests", json=body, headers=alice))
    assert problem["code"] == "invalid_input"
    (refused,) = refusals(client, admin, "request.create")
    assert refused["details"]["error"] == "invalid_input"


@pytest.mark.parametrize("duration", HUGE_DURATIONS)
def test_an_extension_by_a_huge_or_meaningless_duration_is_refused_and_audited(
    client: TestClient, alice: dict[str, str], admin: dict[str, str], duration: str
) -> None:
    created = client.post("/api/v1/requests", json={"role": "stage-shell", "duration": "10m"}, headers=alice)
    grant = created.json()["grant"]["id"]
    answer = client.post(f"/api/v1/grants/{grant}/extend", json={"duration": duration}, headers=alice)
    assert one_line_refusal(answer)["code"] == "invalid_input"
    (refused,) = refusals(client, admin, "grant.extend")
    assert refused["grant_id"] == grant


@pytest.mark.parametrize("start", EXTREME_TIMES)
def test_a_request_starting_at_an_extreme_time_is_refused_and_audited(
    client: TestClient, alice: dict[str, str], admin: dict[str, str], start: str
) -> None:
    body = {"role": "stage-shell", "duration": "10m", "start_at": start}
    assert (
        one_line_refusal(client.post("/api/v1/requests", json=body, headers=alice))["code"] == "invalid_input"
    )
    assert len(refusals(client, admin, "request.create")) == 1


@pytest.mark.parametrize("since", [*EXTREME_TIMES[:2], EXTREME_TIMES[-1], "nan", "+999999-01-01T00:00Z"])
def test_the_audit_trail_refuses_a_since_without_a_utc_form(
    client: TestClient, admin: dict[str, str], since: str
) -> None:
    one_line_refusal(client.get("/api/v1/audit", params={"since": since}, headers=admin))


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_the_audit_trail_takes_the_ends_of_the_calendar_in_utc(
    client: TestClient, admin: dict[str, str], since: str
) -> None:
    assert client.get("/api/v1/audit", params={"since": since}, headers=admin).status_code == 200


@pytest.mark.parametrize("after", [str(2**63), str(2**70), "-1", "1e400"])
def test_the_audit_trail_refuses_record_numbers_no_column_holds(
    client: TestClient, admin: dict[str, str], after: str
) -> None:
    one_line_refusal(client.get("/api/v1/audit", params={"after_seq": after}, headers=admin))


@pytest.mark.parametrize("overlap", ["99999999999w", "999999999d", "9" * 5000 + "s", "nan"])
def test_a_ca_rotation_with_a_huge_overlap_is_refused_and_audited(
    client: TestClient, admin: dict[str, str], overlap: str
) -> None:
    answer = client.post("/api/v1/ca/ssh/rotate", params={"overlap": overlap}, headers=admin)
    assert one_line_refusal(answer)["code"] == "invalid_input"
    (refused,) = refusals(client, admin, "ca.rotate")
    assert len(refused["details"]["reason"]) <= 1024


@pytest.mark.parametrize("validity", ["99999999999w", "999999999d", "nan"])
def test_a_host_certificate_for_a_huge_validity_is_refused_and_audited(
    client: TestClient, admin: dict[str, str], validity: str
) -> None:
    body = {"public_key": "ssh-ed25519 AAAA", "principals": ["web-1"], "validity": validity}
    answer = client.post("/api/v1/ssh/host-certificates", json=body, headers=admin)
    assert one_line_refusal(answer)["code"] == "invalid_input"
    assert len(refusals(client, admin, "host_certificate.issue")) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/requests", {"role": "stage-shell", "duration": "10m", "reason": "see {token}"}),
        ("/api/v1/requests", {"role": "{token}"}),
        ("/api/v1/ssh/certificates", {"target": "{token}", "public_key": "ssh-ed25519 AAAA"}),
        ("/api/v1/ssh/certificates", {"target": "stage-1", "public_key": "x", "{token}": "x"}),
        ("/api/v1/requests/{token}/cancel", {}),
        ("/api/v1/grants/{token}/revoke", {"comment": "{token}"}),
    ],
)
def test_a_fresh_api_token_anywhere_in_an_ask_is_refused_audited_and_never_recorded(
    client: TestClient, alice: dict[str, str], admin: dict[str, str], path: str, body: dict[str, str]
) -> None:
    token = new_token()
    filled = {k.replace("{token}", token): v.replace("{token}", token) for k, v in body.items()}
    one_line_refusal(client.post(path.replace("{token}", token), json=filled, headers=alice))
    trail = client.get("/api/v1/audit", params={"limit": 1000}, headers=admin)
    assert token not in trail.text
    assert any(e["action"] == "access.refused" and e["actor"] == "alice" for e in trail.json())
    assert client.get("/api/v1/audit/verify", headers=admin).json()["ok"]
